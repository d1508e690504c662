import Testing
import TandemNN
import TandemTestSupport

@Suite struct SequentialTests {
    /// `Sequential(ReLU, MaxPool2d)` pools first; values must equal ReLU then pooling bit for
    /// bit and gradients as numbers, with ties between positives, windows of only negatives, zeros,
    /// NaN and padding.
    @Test func reluBeforeMaxPoolingMatchesTheWrittenOrder() throws {
        var values = Tensor.randn([2, 3, 6, 6], generator: Generator(seed: 3)).toFloatArray()
        for i in stride(from: 0, to: values.count, by: 7) { values[i] = 0.5 }     // ties with their neighbours
        for i in stride(from: 3, to: values.count, by: 11) { values[i] = 0 }
        for i in 0..<4 { values[i] = -1 - Float(i) }                                 // a window of negatives
        values[40] = .nan
        for padding in [0, 1] {
            let model = Sequential(ReLU(), MaxPool2d(kernelSize: 2, stride: padding == 0 ? 2 : 1, padding: padding))
            let a = Tensor(values, shape: [2, 3, 6, 6]).requiringGrad()
            let b = Tensor(values, shape: [2, 3, 6, 6]).requiringGrad()
            let fused = try model(a)
            let written = try b.relu().maxPool2d(kernelSize: [2], stride: [padding == 0 ? 2 : 1], padding: [padding])
            let upstream = Tensor.randn(fused.shape, generator: Generator(seed: 4))
            try fused.backward(upstream)
            try written.backward(upstream)
            #expect(fused.toFloatArray().map(\.bitPattern) == written.toFloatArray().map(\.bitPattern), "padding \(padding)")
            let ga = try #require(a.grad).toFloatArray(), gb = try #require(b.grad).toFloatArray()
            // Equal as numbers: the written order's ReLU backward gives −0 where it masks a negative upstream.
            #expect(ga == gb, "padding \(padding)")
        }
    }

    /// A wrong input shape is the pooling's typed error, as in the written order (ReLU takes any shape).
    @Test func wrongShapeIsTheTypedPoolingError() {
        let model = Sequential(ReLU(), MaxPool2d(kernelSize: 2))
        #expect {
            _ = try model(Tensor.zeros([4, 4]))
        } throws: { error in
            guard case TensorError.shapeMismatch(let op, _) = error else { return false }
            return op == "maxPool2d"
        }
    }

    /// Finite differences through `Sequential(ReLU, MaxPool2d)` (inputs away from 0 and ties).
    @Test func reluThenMaxPoolingGradientCheck() throws {
        let x = Tensor.randn([1, 2, 4, 4], dtype: .float64, generator: Generator(seed: 5))
        let model = Sequential(ReLU(), MaxPool2d(kernelSize: 2))
        let result = try GradCheck.check([x]) { xs in try model(xs[0]) }
        #expect(result.passed, "\(result)")
    }
}
