import Testing
import Foundation
import TandemCore
import TandemTestSupport

/// Cross entropy, NLL, MSE and BCE-with-logits: float64 gradient checks, PyTorch semantics
/// against compositions of basic ops, and bad input.
@Suite struct LossTests {
    static func randn(_ shape: [Int], seed: UInt64, dtype: DType = .float64) -> Tensor {
        Tensor.randn(shape, dtype: dtype, generator: Generator(seed: seed))
    }

    func expectClose(_ a: Tensor?, _ b: Tensor?, rtol: Double = 1e-10, atol: Double = 1e-12, _ label: String,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        guard let a, let b else {
            Issue.record("\(label): missing tensor", sourceLocation: sourceLocation)
            return
        }
        if let message = Closeness.mismatch(a, b, rtol: rtol, atol: atol, label) {
            Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        }
    }

    /// Cross entropy from logSoftmax and a one-hot mask, PyTorch's definition, in float64.
    static func referenceCrossEntropy(_ logits: Tensor, _ labels: [Int], ignoreIndex: Int, smoothing: Double,
                                      reduction: Reduction) throws -> Tensor {
        let c = logits.shape[1]
        let logp = try logits.logSoftmax(axis: 1)
        let keep = labels.map { $0 == ignoreIndex ? 0.0 : 1.0 }
        let safe = Tensor(int64: labels.map { $0 == ignoreIndex ? 0 : $0 })
        let oneHot = try Tensor.oneHot(safe, numClasses: c, dtype: .float64)
        let keepT = Tensor(keep, shape: [labels.count], dtype: .float64)
        let nll = try -(logp * oneHot).sum(axes: [1]) * keepT
        let smooth = try -logp.mean(axes: [1]) * keepT
        let perRow = try nll * (1 - smoothing) + smooth * smoothing
        switch reduction {
        case .none: return perRow
        case .sum: return try perRow.sum()
        case .mean: return try perRow.sum() / keep.reduce(0, +)
        }
    }

    // MARK: - Cross entropy

    static let ceCases: [(Reduction, Double)] = [(.mean, 0), (.mean, 0.2), (.sum, 0), (.sum, 0.1), (.none, 0), (.none, 0.3)]

    @Test(arguments: 0..<ceCases.count)
    func crossEntropyGradcheckWithIgnoreAndSmoothing(_ index: Int) throws {
        let (reduction, smoothing) = Self.ceCases[index]
        let logits = Self.randn([6, 5], seed: 1)
        let labels = [2, -100, 0, 4, -100, 1]
        let target = Tensor(int64: labels)
        let result = try GradCheck.check([logits]) { xs in
            try Tensor.crossEntropy(xs[0], target: target, reduction: reduction, labelSmoothing: smoothing)
        }
        #expect(result.passed, "\(result.report)")
        let value = try Tensor.crossEntropy(logits, target: target, reduction: reduction, labelSmoothing: smoothing)
        let expected = try Self.referenceCrossEntropy(logits, labels, ignoreIndex: -100, smoothing: smoothing, reduction: reduction)
        expectClose(value, expected, "loss")
    }

    @Test func crossEntropyCustomIgnoreIndex() throws {
        let logits = Self.randn([4, 3], seed: 2)
        let labels = [1, 7, 2, 0]
        let loss = try Tensor.crossEntropy(logits, target: Tensor(int64: labels), ignoreIndex: 7)
        expectClose(loss, try Self.referenceCrossEntropy(logits, labels, ignoreIndex: 7, smoothing: 0, reduction: .mean), "loss")
        // -100 is then an ordinary (out-of-range) label.
        #expect(throws: TensorError.self) {
            try Tensor.crossEntropy(logits, target: Tensor(int64: [1, -100, 2, 0]), ignoreIndex: 7)
        }
    }

    /// Class axis 1 of [N, C, d1, d2] and the per-position losses of `.none`.
    @Test func crossEntropySpatialGradcheck() throws {
        let logits = Self.randn([2, 4, 3, 2], seed: 3)
        let labels = [0, 3, 1, -100, 2, 2, 1, 0, 3, 3, -100, 1]
        let target = Tensor(int64: labels, shape: [2, 3, 2])
        for reduction in [Reduction.mean, .none] {
            let result = try GradCheck.check([logits]) { xs in
                try Tensor.crossEntropy(xs[0], target: target, reduction: reduction, labelSmoothing: 0.1)
            }
            #expect(result.passed, "\(result.report)")
        }
        let none = try Tensor.crossEntropy(logits, target: target, reduction: .none, labelSmoothing: 0.1)
        #expect(none.shape == [2, 3, 2])
        let flat = try logits.permute([0, 2, 3, 1]).reshape([-1, 4])
        let expected = try Self.referenceCrossEntropy(flat, labels, ignoreIndex: -100, smoothing: 0.1, reduction: .none)
        expectClose(none, try expected.reshape([2, 3, 2]), "per-position loss")
    }

    @Test func crossEntropyEdgeCases() throws {
        // All samples ignored: the mean is 0/0 = NaN (PyTorch), the sum 0, and no gradient flows.
        let logits = Self.randn([2, 3], seed: 4).requiringGrad()
        let ignored = Tensor(int64: [-100, -100])
        let mean = try Tensor.crossEntropy(logits, target: ignored)
        #expect(try mean.item().isNaN)
        #expect(try Tensor.crossEntropy(logits, target: ignored, reduction: .sum).item() == 0)
        try Tensor.crossEntropy(logits, target: ignored, reduction: .sum).backward()
        #expect(logits.grad?.toDoubleArray() == [0, 0, 0, 0, 0, 0])
        // Huge logits stay finite; a 1-D input is a single sample.
        let big = Tensor([1000, -1000, 999] as [Float])
        let loss = try Tensor.crossEntropy(big, target: Tensor(int64: [2], shape: []))
        #expect(abs(try loss.item() - 1.3132616) < 1e-6)
        #expect(loss.shape == [])
        let smoothed = try Tensor.crossEntropy(big, target: Tensor(int64: [2], shape: []), labelSmoothing: 0.5)
        // 0.5·1.3132616 + 0.5·(lse - mean(x)) with lse - mean(x) = 1000.3132616 - 333
        #expect(abs(try smoothed.item() - (0.5 * 1.3132616 + 0.5 * 667.3132616)) < 1e-4)
        // float32 matches float64.
        let logits32 = try (Self.randn([64, 10], seed: 5) * 3).to(.float32)
        let target = Tensor(int64: (0..<64).map { $0 % 10 })
        let l32 = try Tensor.crossEntropy(logits32, target: target, labelSmoothing: 0.1)
        let l64 = try Tensor.crossEntropy(logits32.to(.float64), target: target, labelSmoothing: 0.1)
        #expect(abs(try l32.item() - l64.item()) < 1e-5)
    }

    @Test func crossEntropyNonFiniteAndNoGrad() throws {
        // -inf logits of other classes are fine (probability 0); smoothing then sees -inf → inf,
        // as in PyTorch. A NaN logit makes the loss NaN.
        let x = Tensor([0, -Float.infinity, 1, 2] as [Float], shape: [1, 4]).requiringGrad()
        let loss = try Tensor.crossEntropy(x, target: Tensor(int64: [2]))
        let expected = Foundation.log(1 + Foundation.exp(-1.0) + Foundation.exp(1.0))
        #expect(abs(try loss.item() - expected) < 1e-6)
        try loss.backward()
        let grad = x.grad?.toDoubleArray() ?? []
        #expect(grad.count == 4 && grad[1] == 0 && grad.allSatisfy { $0.isFinite })
        #expect(try Tensor.crossEntropy(x.detach(), target: Tensor(int64: [2]), labelSmoothing: 0.1).item() == .infinity)
        let nan = Tensor([0, .nan, 1] as [Float], shape: [1, 3])
        #expect(try Tensor.crossEntropy(nan, target: Tensor(int64: [0])).item().isNaN)
        // Without grad mode no graph is recorded, and the value is the same.
        let y = Self.randn([8, 6], seed: 14).to(.float32).requiringGrad()
        let target = Tensor(int64: [0, 1, 2, 3, 4, 5, 0, 1])
        let withGrad = try Tensor.crossEntropy(y, target: target, labelSmoothing: 0.2)
        let noGrad = try Tensor.withNoGrad { try Tensor.crossEntropy(y, target: target, labelSmoothing: 0.2) }
        #expect(withGrad.requiresGrad && !noGrad.requiresGrad)
        #expect(try withGrad.item() == noGrad.item())
    }

    @Test func crossEntropyLargeMatchesComposition() throws {
        // Enough rows to run in parallel.
        let logits = try Self.randn([512, 100], seed: 6) * 4
        let labels = (0..<512).map { $0 % 7 == 0 ? -100 : ($0 * 37) % 100 }
        let x = logits.to(.float32).requiringGrad()
        let loss = try Tensor.crossEntropy(x, target: Tensor(int64: labels), labelSmoothing: 0.05)
        try loss.backward()
        let xr = logits.requiringGrad()
        let ref = try Self.referenceCrossEntropy(xr, labels, ignoreIndex: -100, smoothing: 0.05, reduction: .mean)
        try ref.backward()
        expectClose(loss, ref.to(.float32), rtol: 1e-5, atol: 1e-6, "loss")
        expectClose(x.grad, xr.grad?.to(.float32), rtol: 1e-4, atol: 1e-7, "grad")
    }

    @Test func crossEntropyBadInput() throws {
        let logits = Tensor.zeros([3, 5])
        // Wrong target dtype.
        #expect(throws: TensorError.self) { try Tensor.crossEntropy(logits, target: Tensor.zeros([3])) }
        #expect(throws: TensorError.self) { try Tensor.crossEntropy(logits, target: Tensor.zeros([3], dtype: .int32)) }
        // Wrong target shape, with both shapes in the message.
        do {
            _ = try Tensor.crossEntropy(logits, target: Tensor(int64: [0, 1]))
            Issue.record("expected a shape error")
        } catch let error as TensorError {
            #expect(error.description.contains("[2]") && error.description.contains("[3, 5]"), "\(error)")
        }
        #expect(throws: TensorError.self) { try Tensor.crossEntropy(logits, target: Tensor(int64: [0, 1, 2], shape: [3, 1])) }
        // Label out of range names the label and C.
        do {
            _ = try Tensor.crossEntropy(logits, target: Tensor(int64: [0, 5, 1]))
            Issue.record("expected a label error")
        } catch let error as TensorError {
            #expect(error.description.contains("5") && error.description.contains("classes"), "\(error)")
        }
        #expect(throws: TensorError.self) { try Tensor.crossEntropy(logits, target: Tensor(int64: [0, -1, 1])) }
        #expect(throws: TensorError.self) {
            try Tensor.crossEntropy(logits, target: Tensor(int64: [0, 1, 1]), labelSmoothing: 1.5)
        }
        #expect(throws: TensorError.self) { try Tensor.crossEntropy(logits.to(.int64), target: Tensor(int64: [0, 1, 1])) }
    }

    // MARK: - NLL

    @Test func nllLossGradcheckAndSemantics() throws {
        let x = Self.randn([5, 4], seed: 7)
        let labels = [3, 0, -100, 1, 1]
        let target = Tensor(int64: labels)
        for reduction in [Reduction.mean, .sum, .none] {
            let result = try GradCheck.check([x]) { xs in
                try Tensor.nllLoss(logProbs: xs[0].logSoftmax(axis: 1), target: target, reduction: reduction)
            }
            #expect(result.passed, "\(result.report)")
            // nll(logSoftmax(x)) == crossEntropy(x).
            let nll = try Tensor.nllLoss(logProbs: x.logSoftmax(axis: 1), target: target, reduction: reduction)
            let ce = try Tensor.crossEntropy(x, target: target, reduction: reduction)
            expectClose(nll, ce, "nll vs crossEntropy")
        }
        let plain = try Tensor.nllLoss(logProbs: x, target: target, reduction: .none)
        let xs = x.toDoubleArray()
        #expect(plain.toDoubleArray() == [-xs[3], -xs[4], 0, -xs[13], -xs[17]])
        let spatial = Self.randn([2, 3, 4], seed: 8)
        let spatialTarget = Tensor(int64: [0, 1, 2, 2, 1, 0, -100, 1], shape: [2, 4])
        let result = try GradCheck.check([spatial]) { xs in try Tensor.nllLoss(logProbs: xs[0], target: spatialTarget) }
        #expect(result.passed, "\(result.report)")
    }

    @Test func nllLossBadInput() throws {
        let x = Tensor.zeros([2, 3])
        #expect(throws: TensorError.self) { try Tensor.nllLoss(logProbs: x, target: Tensor.zeros([2])) }
        #expect(throws: TensorError.self) { try Tensor.nllLoss(logProbs: x, target: Tensor(int64: [0, 1, 2])) }
        #expect(throws: TensorError.self) { try Tensor.nllLoss(logProbs: x, target: Tensor(int64: [0, 3])) }
    }

    // MARK: - MSE

    @Test func mseLossGradcheck() throws {
        let a = Self.randn([3, 4], seed: 9), b = Self.randn([3, 4], seed: 10)
        for reduction in [Reduction.mean, .sum, .none] {
            let result = try GradCheck.check([a, b]) { xs in try Tensor.mseLoss(xs[0], xs[1], reduction: reduction) }
            #expect(result.passed, "\(result.report)")
        }
        let d = zip(a.toDoubleArray(), b.toDoubleArray()).map { ($0 - $1) * ($0 - $1) }
        expectClose(try Tensor.mseLoss(a, b), Tensor.scalar(d.reduce(0, +) / 12, dtype: .float64), "mean")
        #expect(try Tensor.mseLoss(a, b).shape == [])
        #expect(throws: TensorError.self) { try Tensor.mseLoss(a, Tensor.zeros([4], dtype: .float64)) }
        #expect(throws: TensorError.self) { try Tensor.mseLoss(a, b.to(.float32)) }
    }

    // MARK: - BCE with logits

    @Test func bceWithLogitsGradcheck() throws {
        // Includes x = 0 exactly and large magnitudes.
        var logitValues = Self.randn([4, 3], seed: 11).toDoubleArray()
        logitValues[0] = 0; logitValues[1] = 30; logitValues[2] = -30
        let logits = Tensor(logitValues, shape: [4, 3], dtype: .float64)
        let target = Tensor.uniform([4, 3], dtype: .float64, generator: Generator(seed: 12))
        let posWeight = try Tensor.uniform([3], dtype: .float64, generator: Generator(seed: 13)) + 0.5
        for reduction in [Reduction.mean, .sum, .none] {
            let result = try GradCheck.check([logits, target]) { xs in
                try Tensor.binaryCrossEntropyWithLogits(xs[0], xs[1], reduction: reduction)
            }
            #expect(result.passed, "\(result.report)")
        }
        let weighted = try GradCheck.check([logits, target, posWeight]) { xs in
            try Tensor.binaryCrossEntropyWithLogits(xs[0], xs[1], posWeight: xs[2])
        }
        #expect(weighted.passed, "\(weighted.report)")
    }

    @Test func bceWithLogitsValues() throws {
        // -[y log σ(x) + (1-y) log(1-σ(x))], and the stable form never overflows.
        let x = Tensor([-2, 0.5, 3, 100, -100], shape: [5], dtype: .float32)
        let y = Tensor([0, 1, 0.25, 1, 0], shape: [5], dtype: .float32)
        let loss = try Tensor.binaryCrossEntropyWithLogits(x, y, reduction: .none).toDoubleArray()
        let naive = zip([-2, 0.5, 3.0], [0, 1, 0.25]).map { x, y -> Double in
            let s = 1 / (1 + Foundation.exp(-x))
            return -(y * Foundation.log(s) + (1 - y) * Foundation.log(1 - s))
        }
        for i in 0..<3 { #expect(abs(loss[i] - naive[i]) < 1e-6) }
        #expect(loss[3] < 1e-6 && loss[4] < 1e-6)
        // posWeight scales the positive term: y·pw·softplus(-x) + (1-y)·softplus(x).
        let pw = Tensor([2] as [Float])
        let weighted = try Tensor.binaryCrossEntropyWithLogits(x, y, reduction: .none, posWeight: pw).toDoubleArray()
        let sp = { (v: Double) in Foundation.log1p(Foundation.exp(v)) }
        #expect(abs(weighted[2] - (0.25 * 2 * sp(-3) + 0.75 * sp(3))) < 1e-6)
        #expect(throws: TensorError.self) { try Tensor.binaryCrossEntropyWithLogits(x, Tensor.zeros([4])) }
        #expect(throws: TensorError.self) {
            try Tensor.binaryCrossEntropyWithLogits(x, y, posWeight: Tensor.ones([3]))
        }
    }

    /// A strided target view (e.g. a narrowed window of tokens) gives the same loss as its
    /// contiguous copy; the label check once read a freed temporary copy here.
    @Test func crossEntropyStridedTarget() throws {
        let tokens = Tensor(int64: (0..<4 * 6).map { ($0 * 7) % 3 }, shape: [4, 6])
        let strided = try tokens.narrow(axis: 1, start: 1, length: 5).narrow(axis: 0, start: 2, length: 2)   // [2, 5]
        #expect(!strided.isContiguous)
        let logits = Self.randn([2, 3, 5], seed: 11)
        let contiguous = Tensor(int64: strided.toIntArray(), shape: [2, 5])
        for _ in 0..<20 {
            let a = try Tensor.crossEntropy(logits, target: strided, reduction: .none)
            let b = try Tensor.crossEntropy(logits, target: contiguous, reduction: .none)
            #expect(a.toDoubleArray() == b.toDoubleArray())
        }
    }
}
