import Testing
@testable import TandemCore
import TandemTestSupport

/// A fused kernel is a backend pattern of a composite op: its values and gradients must be the
/// composite's, here in float64 where both are exact to rounding.
@Suite struct FusedPatternTests {
    /// Batch norm's fused kernels (per-channel runs of ≥ 8 elements, and the short-run path)
    /// against (x − mean) / √(var + eps) · w + b built from primitives, in training mode.
    @Test(arguments: [[4, 3, 5, 5], [6, 3]]) func batchNormEqualsItsComposite(shape: [Int]) throws {
        let g = Generator(seed: 11)
        let c = shape[1]
        let axes = [0] + Array(2..<shape.count)
        var view = [Int](repeating: 1, count: shape.count)
        view[1] = c
        func inputs() -> (Tensor, Tensor, Tensor) {
            let g = Generator(seed: 3)
            return (Tensor.randn(shape, dtype: .float64, generator: g).requiringGrad(),
                    Tensor.randn([c], dtype: .float64, generator: g).requiringGrad(),
                    Tensor.randn([c], dtype: .float64, generator: g).requiringGrad())
        }
        let upstream = Tensor.randn(shape, dtype: .float64, generator: g)
        let (x1, w1, b1) = inputs()
        var mean: Tensor? = nil, variance: Tensor? = nil
        let fused = try Tensor.batchNorm(x1, runningMean: &mean, runningVar: &variance, weight: w1, bias: b1, training: true)
        try fused.backward(upstream)
        let (x2, w2, b2) = inputs()
        let mu = try x2.mean(axes: axes, keepDim: true)
        let v = try x2.variance(axes: axes, correction: 0, keepDim: true)
        let composite = try (x2 - mu) * (v + 1e-5).rsqrt() * w2.reshape(view) + b2.reshape(view)
        try composite.backward(upstream)
        #expect(Closeness.mismatch(fused, composite, rtol: 1e-10, atol: 1e-12, "output") == nil)
        for (name, a, b) in [("x", x1, x2), ("weight", w1, w2), ("bias", b1, b2)] {
            #expect(Closeness.mismatch(try #require(a.grad), try #require(b.grad), rtol: 1e-10, atol: 1e-12, name) == nil)
        }
    }

    /// Cross entropy's fused kernel (log-softmax, NLL, label smoothing, an ignored label, the
    /// mean over kept rows) against −Σ((1 − ε)·onehot + ε/C)·logSoftmax over the kept rows.
    @Test(arguments: [0.0, 0.1]) func crossEntropyEqualsItsComposite(smoothing: Double) throws {
        let (n, c) = (6, 5)
        let labels = [0, 4, -100, 2, 2, 1]
        let target = Tensor(int64: labels)
        func logits() -> Tensor { Tensor.randn([n, c], dtype: .float64, generator: Generator(seed: 5)).requiringGrad() }
        let a = logits(), b = logits()
        let fused = try Tensor.crossEntropy(a, target: target, ignoreIndex: -100, labelSmoothing: smoothing)
        try fused.backward()
        let kept = labels.map { $0 == -100 ? 0.0 : 1.0 }
        let oneHot = Tensor(labels.flatMap { l in (0..<c).map { $0 == l ? 1.0 : 0.0 } }, shape: [n, c], dtype: .float64)
        let weights = try (oneHot * (1 - smoothing) + smoothing / Double(c)) * Tensor(kept, shape: [n, 1], dtype: .float64)
        let composite = try -(weights * b.logSoftmax(axis: 1)).sum() / kept.reduce(0, +)
        try composite.backward()
        #expect(Closeness.mismatch(fused, composite, rtol: 1e-12, atol: 1e-12, "loss") == nil)
        #expect(Closeness.mismatch(try #require(a.grad), try #require(b.grad), rtol: 1e-10, atol: 1e-12, "logits gradient") == nil)
    }
}
