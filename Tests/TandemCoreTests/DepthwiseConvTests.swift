import Testing
@testable import TandemCore
import TandemTestSupport

/// The direct depthwise kernel (`Kernels.depthwiseConvForward` / `depthwiseConvBackward`)
/// against im2col + GEMM, and what `Tensor.conv2d` routes to it.
@Suite struct DepthwiseConvTests {
    static func depthwise(_ batch: Int, _ channels: Int, _ height: Int, _ width: Int, kernel: (Int, Int),
                          stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1)) -> ConvGeometry {
        ConvGeometry(batch: batch, inChannels: channels, height: height, width: width, outChannels: channels, groups: channels,
                     kernelH: kernel.0, kernelW: kernel.1, strideH: stride.0, strideW: stride.1, padH: padding.0, padW: padding.1,
                     dilationH: dilation.0, dilationW: dilation.1)
    }

    static let geometries: [ConvGeometry] = [
        // MambaOut's 7 × 7 "same" convolutions on its four stage sizes.
        depthwise(3, 16, 7, 7, kernel: (7, 7), padding: (3, 3)),
        depthwise(3, 32, 4, 4, kernel: (7, 7), padding: (3, 3)),
        depthwise(3, 64, 2, 2, kernel: (7, 7), padding: (3, 3)),
        depthwise(3, 96, 1, 1, kernel: (7, 7), padding: (3, 3)),
        // Strides, dilation, rectangles, no padding, a conv1d-like row, a column.
        depthwise(2, 5, 9, 8, kernel: (3, 2), stride: (2, 3), padding: (1, 2), dilation: (1, 2)),
        depthwise(2, 3, 11, 10, kernel: (3, 3), stride: (2, 2), padding: (0, 0), dilation: (2, 2)),
        depthwise(1, 6, 1, 30, kernel: (1, 4), padding: (0, 3)),
        depthwise(2, 4, 13, 1, kernel: (5, 1), stride: (3, 1), padding: (2, 0)),
    ]

    @Test(arguments: geometries, [DType.float32, .float64])
    func matchesIm2col(geo: ConvGeometry, dtype: DType) throws {
        let g = Generator(seed: 41)
        let x = Tensor.randn(geo.inputShape, dtype: dtype, generator: g)
        let w = try Tensor.randn(geo.weightShape, dtype: dtype, generator: g) * (1 / Double(geo.kernelArea).squareRoot())
        let b = Tensor.randn([geo.outChannels], dtype: dtype, generator: g)
        let gy = Tensor.randn(geo.outputShape, dtype: dtype, generator: g)
        let (rtol, atol) = dtype == .float64 ? (1e-12, 1e-12) : (1e-5, 1e-5)
        let out = Kernels.convForwardPortable(geo, input: x, weight: w, bias: b)
        let reference = ConvBackendTests.im2colForward(geo, input: x, weight: w, bias: b)
        #expect(Closeness.mismatch(out, reference, rtol: rtol, atol: atol, "output") == nil, "\(geo)")
        let grads = Kernels.convBackwardPortable(geo, input: x, weight: w, gradOut: gy, needInput: true, needWeight: true, needBias: true)
        let ref = ConvBackendTests.im2colBackward(geo, input: x, weight: w, gradOut: gy, needBias: true)
        #expect(Closeness.mismatch(try #require(grads.input), try #require(ref.input), rtol: rtol, atol: atol, "grad input") == nil)
        #expect(Closeness.mismatch(try #require(grads.weight), try #require(ref.weight), rtol: rtol, atol: 10 * atol, "grad weight") == nil)
        #expect(Closeness.mismatch(try #require(grads.bias), try #require(ref.bias), rtol: rtol, atol: 10 * atol, "grad bias") == nil)
        // Only some gradients: the others stay nil.
        let weightOnly = Kernels.convBackwardPortable(geo, input: x, weight: w, gradOut: gy, needInput: false, needWeight: true,
                                                      needBias: false)
        #expect(weightOnly.input == nil && weightOnly.bias == nil)
        #expect(Closeness.mismatch(try #require(weightOnly.weight), try #require(ref.weight), rtol: rtol, atol: 10 * atol) == nil)
    }

    /// Through `Tensor.conv2d` in float32 (oneDNN where it has a direct depthwise kernel, this
    /// kernel where it would use GEMM) and float64, with gradients: the same as im2col.
    @Test(arguments: geometries)
    func conv2dAgreesWhicheverKernelRuns(geo: ConvGeometry) throws {
        for dtype in [DType.float32, .float64] {
            let g = Generator(seed: 43)
            let x = Tensor.randn(geo.inputShape, dtype: dtype, generator: g).requiringGrad()
            let w = try (Tensor.randn(geo.weightShape, dtype: dtype, generator: g) * 0.3).requiringGrad()
            let b = Tensor.randn([geo.outChannels], dtype: dtype, generator: g).requiringGrad()
            let y = try Tensor.conv2d(x, weight: w, bias: b, stride: [geo.strideH, geo.strideW], padding: [geo.padH, geo.padW],
                                      dilation: [geo.dilationH, geo.dilationW], groups: geo.groups)
            let gy = Tensor.randn(geo.outputShape, dtype: dtype, generator: g)
            try y.backward(gy)
            let tolerance = dtype == .float64 ? 1e-12 : 1e-4
            let ref = ConvBackendTests.im2colBackward(geo, input: x.detach(), weight: w.detach(), gradOut: gy, needBias: true)
            #expect(Closeness.mismatch(y, ConvBackendTests.im2colForward(geo, input: x.detach(), weight: w.detach(), bias: b.detach()),
                                       rtol: tolerance, atol: tolerance, "output") == nil, "\(geo) \(dtype)")
            #expect(Closeness.mismatch(try #require(x.grad), try #require(ref.input), rtol: tolerance, atol: tolerance) == nil)
            #expect(Closeness.mismatch(try #require(w.grad), try #require(ref.weight), rtol: tolerance, atol: 10 * tolerance) == nil)
            #expect(Closeness.mismatch(try #require(b.grad), try #require(ref.bias), rtol: tolerance, atol: 10 * tolerance) == nil)
        }
    }

    /// Finite differences in float64 through the direct kernel (tiny maps, padding wider than
    /// the map, strides and dilation).
    @Test func gradientCheck() throws {
        let g = Generator(seed: 47)
        for geo in [Self.depthwise(2, 3, 2, 3, kernel: (5, 5), padding: (2, 2)),
                    Self.depthwise(1, 2, 6, 5, kernel: (3, 3), stride: (2, 1), padding: (1, 1), dilation: (1, 2))] {
            let x = Tensor.randn(geo.inputShape, dtype: .float64, generator: g)
            let w = Tensor.randn(geo.weightShape, dtype: .float64, generator: g)
            let b = Tensor.randn([geo.outChannels], dtype: .float64, generator: g)
            let result = try GradCheck.check([x, w, b]) { xs in
                try Tensor.conv2d(xs[0], weight: xs[1], bias: xs[2], stride: [geo.strideH, geo.strideW], padding: [geo.padH, geo.padW],
                                  dilation: [geo.dilationH, geo.dilationW], groups: geo.groups)
            }
            #expect(result.passed, "\(geo): \(result)")
        }
    }

    /// oneDNN's GEMM-based depthwise kernels are refused; its direct ones are kept.
    @Test func oneDNNRunsOnlyItsDirectDepthwiseKernels() {
        #expect(DNNLConvPlan.plan(for: Self.depthwise(64, 96, 1, 1, kernel: (7, 7), padding: (3, 3)), hasBias: true, threads: 1) == nil)
        #expect(DNNLConvPlan.plan(for: Self.depthwise(64, 16, 7, 7, kernel: (7, 7), padding: (3, 3)), hasBias: true, threads: 1) != nil)
    }
}

/// `Tensor.depthwiseConv2dChannelsLast` against `conv2d` on the permuted tensor.
@Suite struct DepthwiseChannelsLastTests {
    struct Case: Sendable, CustomStringConvertible {
        var shape: [Int], kernel: (Int, Int), padding: [Int], bias: Bool
        var description: String { "x\(shape) k\(kernel) p\(padding) bias \(bias)" }
    }

    static let cases: [Case] = [
        Case(shape: [3, 7, 7, 16], kernel: (7, 7), padding: [3], bias: true),    // MambaOut's stages
        Case(shape: [3, 2, 2, 64], kernel: (7, 7), padding: [3], bias: true),
        Case(shape: [3, 1, 1, 96], kernel: (7, 7), padding: [3], bias: true),
        Case(shape: [2, 5, 6, 7], kernel: (3, 2), padding: [1, 0], bias: false), // odd channels, rectangle
        Case(shape: [1, 6, 5, 3], kernel: (3, 3), padding: [0], bias: true),     // "valid"
        Case(shape: [1, 4, 4, 3], kernel: (1, 1), padding: [2], bias: true),     // padding wider than the kernel
        Case(shape: [2, 3, 5, 4], kernel: (1, 7), padding: [3], bias: false),    // rows that see only padding
    ]

    @Test(arguments: cases, [DType.float32, .float64])
    func matchesConv2dOnThePermutedTensor(c: Case, dtype: DType) throws {
        let g = Generator(seed: 61)
        let channels = c.shape[3]
        let x = Tensor.randn(c.shape, dtype: dtype, generator: g)
        let w = try Tensor.randn([channels, 1, c.kernel.0, c.kernel.1], dtype: dtype, generator: g) * 0.3
        let b = c.bias ? Tensor.randn([channels], dtype: dtype, generator: g) : nil
        let (xa, wa, ba) = (x.requiringGrad(), w.requiringGrad(), b?.requiringGrad())
        let (xb, wb, bb) = (x.requiringGrad(), w.requiringGrad(), b?.requiringGrad())
        let fast = try Tensor.depthwiseConv2dChannelsLast(xa, weight: wa, bias: ba, padding: c.padding)
        let written = try Tensor.conv2d(xb.permute([0, 3, 1, 2]), weight: wb, bias: bb, padding: c.padding, groups: channels)
            .permute([0, 2, 3, 1])
        #expect(fast.shape == written.shape)
        let tolerance = dtype == .float64 ? 1e-12 : 1e-5
        #expect(Closeness.mismatch(fast, written, rtol: tolerance, atol: tolerance, "output") == nil, "\(c)")
        let upstream = Tensor.randn(fast.shape, dtype: dtype, generator: g)
        try fast.backward(upstream)
        try written.backward(upstream)
        #expect(Closeness.mismatch(try #require(xa.grad), try #require(xb.grad), rtol: tolerance, atol: tolerance, "grad input") == nil)
        #expect(Closeness.mismatch(try #require(wa.grad), try #require(wb.grad), rtol: tolerance, atol: 10 * tolerance, "grad weight") == nil)
        if let ba, let bb {
            #expect(Closeness.mismatch(try #require(ba.grad), try #require(bb.grad), rtol: tolerance, atol: 10 * tolerance) == nil)
        }
    }

    @Test func gradientCheck() throws {
        let g = Generator(seed: 62)
        let x = Tensor.randn([2, 3, 2, 4], dtype: .float64, generator: g)
        let w = Tensor.randn([4, 1, 3, 5], dtype: .float64, generator: g)
        let b = Tensor.randn([4], dtype: .float64, generator: g)
        let result = try GradCheck.check([x, w, b]) { xs in
            try Tensor.depthwiseConv2dChannelsLast(xs[0], weight: xs[1], bias: xs[2], padding: [1, 2])
        }
        #expect(result.passed, "\(result)")
    }

    @Test func badInputThrowsTypedErrors() {
        let x = Tensor.randn([2, 4, 4, 3])
        func fails(_ weight: Tensor, _ bias: Tensor? = nil, padding: [Int] = [1], input: Tensor? = nil) -> Bool {
            (try? Tensor.depthwiseConv2dChannelsLast(input ?? x, weight: weight, bias: bias, padding: padding)) == nil
        }
        #expect(fails(Tensor.randn([4, 1, 3, 3])), "channel count")
        #expect(fails(Tensor.randn([3, 2, 3, 3])), "not depthwise")
        #expect(fails(Tensor.randn([3, 1, 3, 3]), Tensor.zeros([4])), "bias")
        #expect(fails(Tensor.randn([3, 1, 3, 3]), padding: [-1]), "negative padding")
        #expect(fails(Tensor.randn([3, 1, 9, 9]), padding: [0]), "kernel larger than the input")
        #expect(fails(Tensor.randn([3, 1, 3, 3]), input: Tensor.randn([4, 4, 3])), "rank 3")
        #expect(fails(Tensor.randn([0, 1, 3, 3]), input: Tensor.randn([2, 4, 4, 0])), "no channels")
        #expect(!fails(Tensor.randn([3, 1, 3, 3])))
    }
}
