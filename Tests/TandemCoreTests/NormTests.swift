import Testing
import TandemCore
import TandemTestSupport

/// Batch, layer, RMS and group norm: float64 gradient checks, agreement with a composition
/// of basic ops (including shapes large enough to run in parallel), and bad input.
@Suite struct NormTests {
    static func randn(_ shape: [Int], seed: UInt64, dtype: DType = .float64) -> Tensor {
        Tensor.randn(shape, dtype: dtype, generator: Generator(seed: seed))
    }

    /// Batch norm from basic ops: statistics over every axis but 1, biased variance.
    static func referenceBatchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Double) throws -> Tensor {
        let axes = [0] + Array(2..<x.rank)
        var paramShape = [Int](repeating: 1, count: x.rank)
        paramShape[1] = x.shape[1]
        let mean = try x.mean(axes: axes, keepDim: true)
        let variance = try x.variance(axes: axes, correction: 0, keepDim: true)
        var y = try (x - mean) / (variance + eps).sqrt()
        if let weight { y = try y * weight.reshape(paramShape) }
        if let bias { y = try y + bias.reshape(paramShape) }
        return y
    }

    /// Layer/RMS norm from basic ops over the last `k` axes.
    static func referenceRowNorm(_ x: Tensor, k: Int, centered: Bool, weight: Tensor?, bias: Tensor?, eps: Double) throws -> Tensor {
        let axes = Array((x.rank - k)..<x.rank)
        var y: Tensor
        if centered {
            let mean = try x.mean(axes: axes, keepDim: true)
            let variance = try x.variance(axes: axes, correction: 0, keepDim: true)
            y = try (x - mean) / (variance + eps).sqrt()
        } else {
            y = try x / ((x * x).mean(axes: axes, keepDim: true) + eps).sqrt()
        }
        if let weight { y = try y * weight }
        if let bias { y = try y + bias }
        return y
    }

    static func referenceGroupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Double) throws -> Tensor {
        let n = x.shape[0], c = x.shape[1]
        let grouped = try x.reshape([n, groups, -1])
        var y = try referenceRowNorm(grouped, k: 1, centered: true, weight: nil, bias: nil, eps: eps).reshape(x.shape)
        var paramShape = [Int](repeating: 1, count: x.rank)
        paramShape[1] = c
        if let weight { y = try y * weight.reshape(paramShape) }
        if let bias { y = try y + bias.reshape(paramShape) }
        return y
    }

    func expectClose(_ a: Tensor?, _ b: Tensor?, rtol: Double = 1e-4, atol: Double = 1e-5, _ label: String,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        guard let a, let b else {
            Issue.record("\(label): missing tensor", sourceLocation: sourceLocation)
            return
        }
        if let message = Closeness.mismatch(a, b, rtol: rtol, atol: atol, label) {
            Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        }
    }

    // MARK: - Batch norm

    /// Spatial sizes 1 ([N, C]), 3 (short runs) and 12 (lane path) cover both kernel paths.
    @Test(arguments: [[5, 3], [4, 3, 3], [3, 2, 3, 4]])
    func batchNormTrainingGradcheck(_ shape: [Int]) throws {
        let c = shape[1]
        let x = Self.randn(shape, seed: 1)
        let weight = Self.randn([c], seed: 2), bias = Self.randn([c], seed: 3)
        let result = try GradCheck.check([x, weight, bias]) { xs in
            var rm: Tensor? = nil, rv: Tensor? = nil
            return try Tensor.batchNorm(xs[0], runningMean: &rm, runningVar: &rv, weight: xs[1], bias: xs[2], training: true)
        }
        #expect(result.passed, "\(result.report)")
    }

    @Test func batchNormWithoutAffineGradcheck() throws {
        let x = Self.randn([4, 2, 3, 3], seed: 4)
        let result = try GradCheck.check([x]) { xs in
            var rm: Tensor? = nil, rv: Tensor? = nil
            return try Tensor.batchNorm(xs[0], runningMean: &rm, runningVar: &rv, weight: nil, bias: nil, training: true)
        }
        #expect(result.passed, "\(result.report)")
    }

    /// Spatial size 10 runs the fused kernels, [6, 2] the short-run path.
    @Test(arguments: [[3, 2, 10], [6, 2]])
    func batchNormEvalGradcheck(_ shape: [Int]) throws {
        let x = Self.randn(shape, seed: 5)
        let weight = Self.randn([2], seed: 6), bias = Self.randn([2], seed: 7)
        let rmValue = Self.randn([2], seed: 8), rvValue = try Self.randn([2], seed: 9).abs() + 0.5
        let result = try GradCheck.check([x, weight, bias]) { xs in
            var rm: Tensor? = rmValue, rv: Tensor? = rvValue
            return try Tensor.batchNorm(xs[0], runningMean: &rm, runningVar: &rv, weight: xs[1], bias: xs[2], training: false)
        }
        #expect(result.passed, "\(result.report)")
        var paramShape = [Int](repeating: 1, count: shape.count)
        paramShape[1] = 2
        let p = { (t: Tensor) in try t.reshape(paramShape) }
        var rm: Tensor? = rmValue, rv: Tensor? = rvValue
        let out = try Tensor.batchNorm(x, runningMean: &rm, runningVar: &rv, weight: weight, bias: bias, training: false)
        let expected = try (x - p(rmValue)) / (p(rvValue) + 1e-5).sqrt() * p(weight) + p(bias)
        expectClose(out, expected, rtol: 1e-12, atol: 1e-12, "eval out")
    }

    /// float32 against the float64 composition on shapes that run in parallel (MNIST ConvNet
    /// sizes at a smaller batch), with a large mean offset to test the centred kernels.
    @Test(arguments: [[8, 16, 28, 28], [16, 32, 14, 14], [256, 40]])
    func batchNormMatchesComposition(_ shape: [Int]) throws {
        let c = shape[1]
        let x64 = try Self.randn(shape, seed: 10) * 2 + 30
        let w64 = Self.randn([c], seed: 11), b64 = Self.randn([c], seed: 12)
        let up64 = Self.randn(shape, seed: 13)
        let expected = try Self.referenceBatchNorm(x64.requiringGrad(), weight: w64, bias: b64, eps: 1e-5)
        let (xr, wr, br) = (x64.requiringGrad(), w64.requiringGrad(), b64.requiringGrad())
        try (Self.referenceBatchNorm(xr, weight: wr, bias: br, eps: 1e-5) * up64).sum().backward()

        let (x, w, b) = (x64.to(.float32).requiringGrad(), w64.to(.float32).requiringGrad(), b64.to(.float32).requiringGrad())
        var rm: Tensor? = Tensor.zeros([c]), rv: Tensor? = Tensor.ones([c])
        let out = try Tensor.batchNorm(x, runningMean: &rm, runningVar: &rv, weight: w, bias: b, training: true)
        try (out * up64.to(.float32)).sum().backward()
        expectClose(out, expected.to(.float32), "out")
        expectClose(x.grad, xr.grad?.to(.float32), "grad_x")
        expectClose(w.grad, wr.grad?.to(.float32), rtol: 1e-4, atol: 1e-4, "grad_weight")
        expectClose(b.grad, br.grad?.to(.float32), rtol: 1e-4, atol: 1e-4, "grad_bias")

        // Running statistics: 0.9·old + 0.1·batch, with the unbiased variance.
        let axes = [0] + Array(2..<x64.rank)
        let batchMean = try x64.mean(axes: axes), batchVar = try x64.variance(axes: axes, correction: 1)
        expectClose(rm, try (batchMean * 0.1).to(.float32), "running_mean")
        expectClose(rv, try (batchVar * 0.1 + 0.9).to(.float32), "running_var")
    }

    @Test func batchNormFloat64MatchesComposition() throws {
        let x = Self.randn([6, 3, 5, 7], seed: 14).requiringGrad()
        let w = Self.randn([3], seed: 15).requiringGrad()
        var rm: Tensor? = nil, rv: Tensor? = nil
        let out = try Tensor.batchNorm(x, runningMean: &rm, runningVar: &rv, weight: w, bias: nil, training: true)
        #expect(out.dtype == .float64)
        let expected = try Self.referenceBatchNorm(x.detach(), weight: w.detach(), bias: nil, eps: 1e-5)
        expectClose(out, expected, rtol: 1e-12, atol: 1e-12, "out")
        #expect(rm == nil && rv == nil)
    }

    @Test func batchNormNonContiguousInput() throws {
        // A channels-last tensor permuted to NCHW.
        let nhwc = Self.randn([2, 4, 5, 3], seed: 16, dtype: .float32)
        let x = try nhwc.permute([0, 3, 1, 2])
        var rm: Tensor? = nil, rv: Tensor? = nil
        let out = try Tensor.batchNorm(x, runningMean: &rm, runningVar: &rv, weight: nil, bias: nil, training: true)
        expectClose(out, try Self.referenceBatchNorm(x.contiguous(), weight: nil, bias: nil, eps: 1e-5), "out")
    }

    @Test func batchNormBadInput() throws {
        let x = Tensor.zeros([4, 3, 2, 2])
        var rm: Tensor? = Tensor.zeros([3]), rv: Tensor? = Tensor.ones([3])
        #expect(throws: TensorError.self) {
            try Tensor.batchNorm(x, runningMean: &rm, runningVar: &rv, weight: Tensor.ones([4]), bias: nil, training: true)
        }
        #expect(throws: TensorError.self) {
            try Tensor.batchNorm(Tensor.zeros([3]), runningMean: &rm, runningVar: &rv, weight: nil, bias: nil, training: true)
        }
        #expect(throws: TensorError.self) {
            try Tensor.batchNorm(x.to(.int64), runningMean: &rm, runningVar: &rv, weight: nil, bias: nil, training: true)
        }
        #expect(throws: TensorError.self) {
            try Tensor.batchNorm(x, runningMean: &rm, runningVar: &rv, weight: Tensor.ones([3], dtype: .float64),
                                 bias: nil, training: true)
        }
        var none: Tensor? = nil
        #expect(throws: TensorError.self) {
            try Tensor.batchNorm(x, runningMean: &none, runningVar: &rv, weight: nil, bias: nil, training: false)
        }
        // One value per channel cannot be normalised in training mode.
        #expect(throws: TensorError.self) {
            try Tensor.batchNorm(Tensor.zeros([1, 3]), runningMean: &rm, runningVar: &rv, weight: nil, bias: nil, training: true)
        }
        // Failed calls leave the running statistics alone.
        #expect(rm?.toFloatArray() == [0, 0, 0] && rv?.toFloatArray() == [1, 1, 1])
    }

    // MARK: - Layer norm and RMS norm

    @Test func layerNormGradcheck() throws {
        let x = Self.randn([2, 3, 6], seed: 20)
        let weight = Self.randn([6], seed: 21), bias = Self.randn([6], seed: 22)
        let result = try GradCheck.check([x, weight, bias]) { xs in
            try Tensor.layerNorm(xs[0], normalizedShape: [6], weight: xs[1], bias: xs[2])
        }
        #expect(result.passed, "\(result.report)")
    }

    @Test func layerNormMultiAxisGradcheck() throws {
        let x = Self.randn([3, 2, 4], seed: 23)
        let weight = Self.randn([2, 4], seed: 24)
        let result = try GradCheck.check([x, weight]) { xs in
            try Tensor.layerNorm(xs[0], normalizedShape: [2, 4], weight: xs[1], bias: nil)
        }
        #expect(result.passed, "\(result.report)")
        let plain = try GradCheck.check([x]) { xs in
            try Tensor.layerNorm(xs[0], normalizedShape: [3, 2, 4], weight: nil, bias: nil)
        }
        #expect(plain.passed, "\(plain.report)")
    }

    @Test func rmsNormGradcheck() throws {
        let x = Self.randn([4, 5], seed: 25)
        let weight = Self.randn([5], seed: 26)
        let result = try GradCheck.check([x, weight]) { xs in
            try Tensor.rmsNorm(xs[0], normalizedShape: [5], weight: xs[1])
        }
        #expect(result.passed, "\(result.report)")
        let plain = try GradCheck.check([x]) { xs in try Tensor.rmsNorm(xs[0], normalizedShape: [5], weight: nil) }
        #expect(plain.passed, "\(plain.report)")
    }

    @Test func rowNormsMatchCompositionInParallel() throws {
        let x64 = try Self.randn([512, 96], seed: 27) + 5
        let w64 = Self.randn([96], seed: 28), b64 = Self.randn([96], seed: 29)
        let up = Self.randn([512, 96], seed: 30)
        for centered in [true, false] {
            let (xr, wr, br) = (x64.requiringGrad(), w64.requiringGrad(), b64.requiringGrad())
            let ref = try Self.referenceRowNorm(xr, k: 1, centered: centered, weight: wr, bias: centered ? br : nil,
                                                eps: centered ? 1e-5 : 1e-6)
            try (ref * up).sum().backward()
            let (x, w, b) = (x64.to(.float32).requiringGrad(), w64.to(.float32).requiringGrad(), b64.to(.float32).requiringGrad())
            let out = centered ? try Tensor.layerNorm(x, normalizedShape: [96], weight: w, bias: b)
                               : try Tensor.rmsNorm(x, normalizedShape: [96], weight: w)
            try (out * up.to(.float32)).sum().backward()
            let label = centered ? "layerNorm" : "rmsNorm"
            expectClose(out, ref.to(.float32), "\(label) out")
            expectClose(x.grad, xr.grad?.to(.float32), "\(label) grad_x")
            expectClose(w.grad, wr.grad?.to(.float32), rtol: 1e-4, atol: 1e-4, "\(label) grad_weight")
            if centered { expectClose(b.grad, br.grad?.to(.float32), rtol: 1e-4, atol: 1e-4, "\(label) grad_bias") }
        }
    }

    @Test func rowNormBadInput() throws {
        let x = Tensor.zeros([2, 3, 4])
        // normalizedShape must match the trailing dimensions.
        #expect(throws: TensorError.self) { try Tensor.layerNorm(x, normalizedShape: [3], weight: nil, bias: nil) }
        #expect(throws: TensorError.self) { try Tensor.layerNorm(x, normalizedShape: [4, 3], weight: nil, bias: nil) }
        #expect(throws: TensorError.self) { try Tensor.layerNorm(x, normalizedShape: [1, 2, 3, 4], weight: nil, bias: nil) }
        #expect(throws: TensorError.self) { try Tensor.layerNorm(x, normalizedShape: [], weight: nil, bias: nil) }
        #expect(throws: TensorError.self) { try Tensor.rmsNorm(x, normalizedShape: [5], weight: nil) }
        // Parameters must be shaped normalizedShape.
        #expect(throws: TensorError.self) {
            try Tensor.layerNorm(x, normalizedShape: [4], weight: Tensor.ones([3]), bias: nil)
        }
        #expect(throws: TensorError.self) { try Tensor.rmsNorm(x, normalizedShape: [3, 4], weight: Tensor.ones([4])) }
        do {
            _ = try Tensor.layerNorm(x, normalizedShape: [3], weight: nil, bias: nil)
        } catch let error as TensorError {
            #expect(error.description.contains("[3]") && error.description.contains("[2, 3, 4]"))
        }
    }

    // MARK: - Group norm

    @Test(arguments: [[2, 6, 5], [3, 4], [2, 4, 3, 3]])
    func groupNormGradcheck(_ shape: [Int]) throws {
        let c = shape[1]
        let x = Self.randn(shape, seed: 31)
        let weight = Self.randn([c], seed: 32), bias = Self.randn([c], seed: 33)
        let result = try GradCheck.check([x, weight, bias]) { xs in
            try Tensor.groupNorm(xs[0], numGroups: 2, weight: xs[1], bias: xs[2])
        }
        #expect(result.passed, "\(result.report)")
    }

    @Test func groupNormMatchesComposition() throws {
        let x64 = try Self.randn([8, 32, 12, 12], seed: 34) - 3
        let w64 = Self.randn([32], seed: 35), b64 = Self.randn([32], seed: 36)
        let up = Self.randn([8, 32, 12, 12], seed: 37)
        let (xr, wr, br) = (x64.requiringGrad(), w64.requiringGrad(), b64.requiringGrad())
        let ref = try Self.referenceGroupNorm(xr, groups: 4, weight: wr, bias: br, eps: 1e-5)
        try (ref * up).sum().backward()
        let (x, w, b) = (x64.to(.float32).requiringGrad(), w64.to(.float32).requiringGrad(), b64.to(.float32).requiringGrad())
        let out = try Tensor.groupNorm(x, numGroups: 4, weight: w, bias: b)
        try (out * up.to(.float32)).sum().backward()
        expectClose(out, ref.to(.float32), "out")
        expectClose(x.grad, xr.grad?.to(.float32), "grad_x")
        expectClose(w.grad, wr.grad?.to(.float32), rtol: 1e-4, atol: 1e-4, "grad_weight")
        expectClose(b.grad, br.grad?.to(.float32), rtol: 1e-4, atol: 1e-4, "grad_bias")
        // One group per channel is instance norm; C groups of one channel each.
        let instance = try Tensor.groupNorm(x64, numGroups: 32, weight: nil, bias: nil)
        let axes = [2, 3]
        let expected = try (x64 - x64.mean(axes: axes, keepDim: true)) / (x64.variance(axes: axes, correction: 0, keepDim: true) + 1e-5).sqrt()
        expectClose(instance, expected, rtol: 1e-10, atol: 1e-10, "instance norm")
    }

    @Test func groupNormBadInput() throws {
        let x = Tensor.zeros([2, 6, 4])
        #expect(throws: TensorError.self) { try Tensor.groupNorm(x, numGroups: 4, weight: nil, bias: nil) }
        #expect(throws: TensorError.self) { try Tensor.groupNorm(x, numGroups: 0, weight: nil, bias: nil) }
        #expect(throws: TensorError.self) { try Tensor.groupNorm(x, numGroups: 3, weight: Tensor.ones([3]), bias: nil) }
        #expect(throws: TensorError.self) { try Tensor.groupNorm(Tensor.zeros([6]), numGroups: 3, weight: nil, bias: nil) }
    }
}
