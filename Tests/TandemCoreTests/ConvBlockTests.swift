import Testing
@testable import TandemCore
import TandemTestSupport

/// `Tensor.fusedConvBatchNormReLUMaxPool` against the four operations one by one.
@Suite struct ConvBlockTests {
    struct Case: Sendable, CustomStringConvertible {
        var batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int
        var kernel: Int, padding: Int, stride: Int, hasBias: Bool, inputGrad: Bool
        var poolKernel: Int, poolStride: Int, poolPadding: Int
        var description: String {
            "N\(batch) \(inChannels)→\(outChannels) \(height)×\(width) k\(kernel) p\(padding) s\(stride) bias \(hasBias) "
                + "pool k\(poolKernel) s\(poolStride) p\(poolPadding)"
        }
    }

    static let cases: [Case] = [
        // The MNIST ConvNet's two blocks (smaller batch): the first takes no input gradient.
        Case(batch: 8, inChannels: 1, outChannels: 16, height: 28, width: 28, kernel: 5, padding: 2, stride: 1, hasBias: true,
             inputGrad: false, poolKernel: 2, poolStride: 2, poolPadding: 0),
        Case(batch: 8, inChannels: 16, outChannels: 32, height: 14, width: 14, kernel: 5, padding: 2, stride: 1, hasBias: true,
             inputGrad: true, poolKernel: 2, poolStride: 2, poolPadding: 0),
        // Channels that are no multiple of the block, odd sizes, overlapping padded windows, strides.
        Case(batch: 3, inChannels: 3, outChannels: 5, height: 9, width: 7, kernel: 3, padding: 1, stride: 1, hasBias: false,
             inputGrad: true, poolKernel: 3, poolStride: 2, poolPadding: 1),
        Case(batch: 2, inChannels: 4, outChannels: 20, height: 11, width: 10, kernel: 3, padding: 0, stride: 2, hasBias: true,
             inputGrad: true, poolKernel: 2, poolStride: 1, poolPadding: 0),
        // Odd convolution outputs (7 × 9) whose last row and column fit no pooling window.
        Case(batch: 2, inChannels: 2, outChannels: 6, height: 7, width: 9, kernel: 3, padding: 1, stride: 1, hasBias: true,
             inputGrad: true, poolKernel: 2, poolStride: 2, poolPadding: 0),
    ]

    /// Input, convolution weight (scaled like PyTorch's initialisation) and bias, batch-norm weight and bias.
    private func operands(_ c: Case, _ g: Generator) throws -> (Tensor, Tensor, Tensor?, Tensor, Tensor) {
        let x = Tensor.randn([c.batch, c.inChannels, c.height, c.width], generator: g)
        let w = try Tensor.randn([c.outChannels, c.inChannels, c.kernel, c.kernel], generator: g)
            * (1 / Double(c.inChannels * c.kernel * c.kernel).squareRoot())
        let b = c.hasBias ? try Tensor.randn([c.outChannels], generator: g) * 0.1 : nil
        return (x, w, b, try Tensor.randn([c.outChannels], generator: g) * 0.2 + 1, try Tensor.randn([c.outChannels], generator: g) * 0.2)
    }

    @Test(arguments: cases) func matchesTheOperationsOneByOne(c: Case) throws {
        let g = Generator(seed: 17)
        let (x, w, b, gamma, beta) = try operands(c, g)

        func leaves() -> [Tensor] {
            [x.requiringGrad(c.inputGrad), w.requiringGrad(), b?.requiringGrad(), gamma.requiringGrad(), beta.requiringGrad()]
                .compactMap { $0 }
        }
        let fusedLeaves = leaves(), plainLeaves = leaves()
        func unpack(_ t: [Tensor]) -> (x: Tensor, w: Tensor, b: Tensor?, gamma: Tensor, beta: Tensor) {
            c.hasBias ? (t[0], t[1], t[2], t[3], t[4]) : (t[0], t[1], nil, t[2], t[3])
        }
        let f = unpack(fusedLeaves), p = unpack(plainLeaves)
        let fused = try #require(Tensor.fusedConvBatchNormReLUMaxPool(
            f.x, weight: f.w, bias: f.b, stride: [c.stride], padding: [c.padding], normWeight: f.gamma, normBias: f.beta,
            eps: 1e-5, poolKernel: [c.poolKernel], poolStride: [c.poolStride], poolPadding: [c.poolPadding]), "fused path refused \(c)")

        let convolved = try Tensor.conv2d(p.x, weight: p.w, bias: p.b, stride: [c.stride], padding: [c.padding])
        var mean: Tensor? = Tensor.zeros([c.outChannels]), variance: Tensor? = Tensor.ones([c.outChannels])
        let plain = try Tensor.batchNorm(convolved, runningMean: &mean, runningVar: &variance, weight: p.gamma, bias: p.beta,
                                         training: true, momentum: 1, eps: 1e-5)
            .relu().maxPool2d(kernelSize: [c.poolKernel], stride: [c.poolStride], padding: [c.poolPadding])
        #expect(Closeness.mismatch(fused.output, plain, rtol: 1e-4, atol: 1e-5, "output") == nil)

        // With momentum 1 the running statistics are the batch mean and the unbiased variance.
        let count = Double(convolved.shape[0] * convolved.shape[2] * convolved.shape[3])
        #expect(Closeness.mismatch(Tensor(fused.mean, shape: [c.outChannels]), mean!, rtol: 1e-4, atol: 1e-5, "mean") == nil)
        #expect(Closeness.mismatch(Tensor(fused.variance.map { $0 * count / (count - 1) }, shape: [c.outChannels]), variance!,
                                   rtol: 1e-4, atol: 1e-5, "variance") == nil)

        let upstream = Tensor.randn(plain.shape, generator: g)
        try fused.output.backward(upstream)
        try plain.backward(upstream)
        for (name, a, e) in zip5(["input", "weight", "bias", "bn weight", "bn bias"], fusedLeaves, plainLeaves, c) {
            if name == "input" && !c.inputGrad { #expect(a.grad == nil); continue }
            let ga = try #require(a.grad, "\(name)"), ge = try #require(e.grad, "\(name)")
            #expect(Closeness.mismatch(ga, ge, rtol: 1e-3, atol: 2e-4, name) == nil, "\(c)")
        }
    }

    /// The leaves by name, skipping the bias when the case has none.
    private func zip5(_ names: [String], _ a: [Tensor], _ b: [Tensor], _ c: Case) -> [(String, Tensor, Tensor)] {
        let used = c.hasBias ? names : names.filter { $0 != "bias" }
        return (0..<used.count).map { (used[$0], a[$0], b[$0]) }
    }

    /// Evaluation: the running statistics, no gradient recorded.
    @Test(arguments: cases) func inferenceMatchesTheOperationsOneByOne(c: Case) throws {
        let g = Generator(seed: 23)
        let (x, w, b, gamma, beta) = try operands(c, g)
        let runningMean = try Tensor.randn([c.outChannels], generator: g) * 0.3
        let runningVar = Tensor.uniform([c.outChannels], low: 0.5, high: 1.5, generator: g)
        try Tensor.withNoGrad {
            let fused = try #require(Tensor.fusedConvBatchNormReLUMaxPool(
                x, weight: w, bias: b, stride: [c.stride], padding: [c.padding], normWeight: gamma, normBias: beta,
                eps: 1e-5, poolKernel: [c.poolKernel], poolStride: [c.poolStride], poolPadding: [c.poolPadding],
                training: false, running: (runningMean, runningVar)), "fused inference refused \(c)")
            var mean: Tensor? = runningMean, variance: Tensor? = runningVar
            let plain = try Tensor.batchNorm(try Tensor.conv2d(x, weight: w, bias: b, stride: [c.stride], padding: [c.padding]),
                                             runningMean: &mean, runningVar: &variance, weight: gamma, bias: beta,
                                             training: false, eps: 1e-5)
                .relu().maxPool2d(kernelSize: [c.poolKernel], stride: [c.poolStride], padding: [c.poolPadding])
            #expect(Closeness.mismatch(fused.output, plain, rtol: 1e-4, atol: 1e-5, "output") == nil, "\(c)")
        }
        // With gradients recorded for a parameter, evaluation runs the operations one by one.
        #expect(Tensor.fusedConvBatchNormReLUMaxPool(
            x, weight: w.requiringGrad(), bias: b, stride: [c.stride], padding: [c.padding], normWeight: gamma, normBias: beta,
            eps: 1e-5, poolKernel: [c.poolKernel], poolStride: [c.poolStride], poolPadding: [c.poolPadding],
            training: false, running: (runningMean, runningVar)) == nil)
        // So does an input that records a gradient (e.g. a saliency map of a frozen model).
        #expect(Tensor.fusedConvBatchNormReLUMaxPool(
            x.requiringGrad(), weight: w, bias: b, stride: [c.stride], padding: [c.padding], normWeight: gamma, normBias: beta,
            eps: 1e-5, poolKernel: [c.poolKernel], poolStride: [c.poolStride], poolPadding: [c.poolPadding],
            training: false, running: (runningMean, runningVar)) == nil)
    }

    @Test func declinesWhatItDoesNotRun() throws {
        let x = Tensor.randn([2, 3, 8, 8]), w = Tensor.randn([4, 3, 3, 3])
        let gamma = Tensor.ones([4]), beta = Tensor.zeros([4])
        func fused(_ x: Tensor, _ w: Tensor, _ gamma: Tensor, _ beta: Tensor, stride: [Int] = [1], padding: [Int] = [1],
                   pool: [Int] = [2]) -> Bool {
            Tensor.fusedConvBatchNormReLUMaxPool(x, weight: w, bias: nil, stride: stride, padding: padding, normWeight: gamma,
                                                 normBias: beta, eps: 1e-5, poolKernel: pool, poolStride: pool, poolPadding: [0]) != nil
        }
        #expect(fused(x, w, gamma, beta))
        #expect(!fused(x.to(.float64), w.to(.float64), gamma.to(.float64), beta.to(.float64)), "float64 runs the operations")
        #expect(!fused(x, Tensor.randn([4, 2, 3, 3]), gamma, beta), "channel mismatch: conv2d reports it")
        #expect(!fused(x, w, Tensor.ones([5]), beta), "wrong batch-norm weight shape")
        #expect(!fused(x, w, gamma, beta, stride: [0]), "invalid stride")
        #expect(fused(Tensor.randn([1, 3, 1, 1]), Tensor.randn([4, 3, 1, 1]), gamma, beta), "9 values per channel, 1 pooled")
        #expect(!fused(Tensor.randn([1, 3, 1, 1]), Tensor.randn([4, 3, 1, 1]), gamma, beta, padding: [0], pool: [1]),
                "one value per channel")
        let underAutocast = autocast(dtype: .bfloat16) { fused(x, w, gamma, beta) }
        #expect(!underAutocast, "autocast converts the operands first")
    }

    /// oneDNN's fused ReLU makes NaN 0; with an inf or NaN the operations run one by one instead,
    /// in training (seen in the batch statistics) and in inference (seen in the operands).
    @Test func declinesInfAndNaN() throws {
        let w = Tensor.randn([4, 3, 3, 3]), beta = Tensor.zeros([4])
        func fused(_ x: Tensor, _ w: Tensor, gamma: Tensor = Tensor.ones([4]), training: Bool,
                   runningVar: Tensor = Tensor.ones([4])) -> Bool {
            Tensor.withNoGrad {
                Tensor.fusedConvBatchNormReLUMaxPool(x, weight: w, bias: nil, stride: [1], padding: [1], normWeight: gamma,
                                                     normBias: beta, eps: 1e-5, poolKernel: [2], poolStride: [2], poolPadding: [0],
                                                     training: training, running: training ? nil : (Tensor.zeros([4]), runningVar)) != nil
            }
        }
        for training in [true, false] {
            #expect(fused(Tensor.randn([2, 3, 8, 8]), w, training: training))
            for bad in [Float.nan, .infinity, -.infinity] {
                var values = Tensor.randn([2, 3, 8, 8]).toFloatArray()
                values[77] = bad
                #expect(!fused(Tensor(values, shape: [2, 3, 8, 8]), w, training: training), "\(bad) in the input, training \(training)")
                var weights = w.toFloatArray()
                weights[5] = bad
                #expect(!fused(Tensor.randn([2, 3, 8, 8]), Tensor(weights, shape: w.shape), training: training), "\(bad) in the weight")
                #expect(!fused(Tensor.randn([2, 3, 8, 8]), w, gamma: Tensor([1, 1, bad, 1] as [Float], shape: [4]), training: training))
            }
        }
        #expect(!fused(Tensor.randn([2, 3, 8, 8]), w, training: false, runningVar: Tensor([1, .nan, 1, 1] as [Float], shape: [4])))
    }

    @Test func isAllFiniteFindsEveryInfAndNaN() throws {
        for dtype in [DType.float32, .float64, .bfloat16] {
            let x = Tensor.randn([5, 7], dtype: dtype == .float64 ? .float64 : .float32).to(dtype)
            #expect(x.isAllFinite(), "\(dtype)")
            #expect(try x.transpose(0, 1).isAllFinite(), "strided \(dtype)")
            for position in [0, 16, 34] {  // in the SIMD part and in the tail
                for bad in [Double.nan, .infinity, -.infinity] {
                    var values = x.toDoubleArray()
                    values[position] = bad
                    #expect(!Tensor(values, shape: [5, 7], dtype: dtype).isAllFinite(), "\(bad) at \(position), \(dtype)")
                }
            }
        }
        #expect(Tensor.zeros([3], dtype: .int64).isAllFinite())
    }
}
