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
