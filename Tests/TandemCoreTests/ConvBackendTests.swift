import Dispatch
import Testing
@testable import TandemCore
import TandemTestSupport
import Synchronization

/// The oneDNN float32 path against the im2col reference, called directly.
@Suite struct ConvBackendTests {
    static let geometries: [ConvGeometry] = [
        // MNIST ConvNet layers (smaller batch), strided, dilated, grouped, depthwise, 1×1, conv1d-like.
        ConvGeometry(batch: 4, inChannels: 1, height: 28, width: 28, outChannels: 16, groups: 1, kernelH: 5, kernelW: 5,
                     strideH: 1, strideW: 1, padH: 2, padW: 2, dilationH: 1, dilationW: 1),
        ConvGeometry(batch: 4, inChannels: 16, height: 14, width: 14, outChannels: 32, groups: 1, kernelH: 5, kernelW: 5,
                     strideH: 1, strideW: 1, padH: 2, padW: 2, dilationH: 1, dilationW: 1),
        ConvGeometry(batch: 2, inChannels: 3, height: 9, width: 8, outChannels: 5, groups: 1, kernelH: 3, kernelW: 3,
                     strideH: 2, strideW: 3, padH: 1, padW: 0, dilationH: 1, dilationW: 1),
        ConvGeometry(batch: 2, inChannels: 4, height: 11, width: 11, outChannels: 6, groups: 2, kernelH: 3, kernelW: 2,
                     strideH: 1, strideW: 2, padH: 2, padW: 1, dilationH: 2, dilationW: 3),
        ConvGeometry(batch: 2, inChannels: 8, height: 6, width: 6, outChannels: 8, groups: 8, kernelH: 7, kernelW: 7,
                     strideH: 1, strideW: 1, padH: 3, padW: 3, dilationH: 1, dilationW: 1),
        ConvGeometry(batch: 3, inChannels: 5, height: 4, width: 5, outChannels: 3, groups: 1, kernelH: 1, kernelW: 1,
                     strideH: 1, strideW: 1, padH: 0, padW: 0, dilationH: 1, dilationW: 1),
        ConvGeometry(batch: 2, inChannels: 6, height: 1, width: 30, outChannels: 6, groups: 6, kernelH: 1, kernelW: 4,
                     strideH: 1, strideW: 1, padH: 0, padW: 3, dilationH: 1, dilationW: 1),
    ]

    @Test(arguments: geometries, [true, false])
    func oneDNNMatchesIm2col(geo: ConvGeometry, withBias: Bool) throws {
        let g = Generator(seed: 31)
        let x = Tensor.randn(geo.inputShape, generator: g)
        // Weights ~ N(0, 1/fan_in) as in PyTorch's init, so outputs are O(1).
        let w = try Tensor.randn(geo.weightShape, generator: g) * (1 / Double(geo.inPerGroup * geo.kernelArea).squareRoot())
        let b = withBias ? Tensor.randn([geo.outChannels], generator: g) : nil
        let gy = Tensor.randn(geo.outputShape, generator: g)
        guard let fast = Kernels.convForwardDNNL(geo, input: x, weight: w, bias: b, keep: true) else {
            // Depthwise convolutions that oneDNN would run on GEMM are refused (see DepthwiseConvTests).
            #expect(geo.isDepthwise, "oneDNN refused \(geo)")
            return
        }
        let reference = Self.im2colForward(geo, input: x, weight: w, bias: b)
        #expect(Closeness.mismatch(fast.out, reference, rtol: 1e-4, atol: 1e-5, "output") == nil)
        let saved = try #require(fast.saved)
        let grads = Kernels.convBackwardDNNL(saved, input: x, weight: w, gradOut: gy, needInput: true, needWeight: true,
                                             needBias: withBias)
        let ref = Self.im2colBackward(geo, input: x, weight: w, gradOut: gy, needBias: withBias)
        #expect(Closeness.mismatch(try #require(grads.input), try #require(ref.input), rtol: 1e-4, atol: 1e-4, "grad input") == nil)
        #expect(Closeness.mismatch(try #require(grads.weight), try #require(ref.weight), rtol: 1e-4, atol: 1e-3, "grad weight") == nil)
        if withBias {
            #expect(Closeness.mismatch(try #require(grads.bias), try #require(ref.bias), rtol: 1e-4, atol: 1e-3, "grad bias") == nil)
        } else {
            #expect(grads.bias == nil)
        }
        // Partial requests: weight only (first layer), bias only.
        let weightOnly = Kernels.convBackwardDNNL(saved, input: x, weight: w, gradOut: gy, needInput: false, needWeight: true,
                                                  needBias: false)
        #expect(weightOnly.input == nil && weightOnly.bias == nil)
        #expect(Closeness.mismatch(try #require(weightOnly.weight), try #require(ref.weight), rtol: 1e-4, atol: 1e-3) == nil)
        if withBias {
            let biasOnly = Kernels.convBackwardDNNL(saved, input: x, weight: w, gradOut: gy, needInput: false,
                                                    needWeight: false, needBias: true)
            #expect(Closeness.mismatch(try #require(biasOnly.bias), try #require(ref.bias), rtol: 1e-4, atol: 1e-3) == nil)
        }
    }

    /// The im2col + GEMM forward pass, whatever the geometry (the reference).
    static func im2colForward(_ geo: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let out = Tensor(uninitializedShape: geo.outputShape, dtype: input.dtype)
        func run<T: FloatElement>(_: T.Type) {
            Kernels.convForwardIm2col(geo, x: input.elementPointer(T.self), w: weight.elementPointer(T.self),
                                      bias: bias.map { UnsafePointer($0.elementPointer(T.self)) }, y: out.elementPointer(T.self))
        }
        if input.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return out
    }

    /// The im2col + GEMM gradients of input, weight and (with `needBias`) bias (the reference).
    static func im2colBackward(_ geo: ConvGeometry, input: Tensor, weight: Tensor, gradOut: Tensor, needBias: Bool)
        -> (input: Tensor?, weight: Tensor?, bias: Tensor?) {
        let gx = Tensor(uninitializedShape: geo.inputShape, dtype: input.dtype)
        let gw = Tensor(uninitializedShape: geo.weightShape, dtype: input.dtype)
        let gb = needBias ? Tensor(uninitializedShape: [geo.outChannels], dtype: input.dtype) : nil
        func run<T: FloatElement>(_: T.Type) {
            Kernels.convBackwardIm2col(geo, x: input.elementPointer(T.self), w: weight.elementPointer(T.self),
                                       gy: gradOut.elementPointer(T.self), gx: gx.elementPointer(T.self),
                                       gw: gw.elementPointer(T.self), gb: gb?.elementPointer(T.self))
        }
        if input.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return (gx, gw, gb)
    }

    /// Cached primitives run from many threads at once (user-managed scratchpads).
    @Test func concurrentCallsAgree() throws {
        let geo = Self.geometries[1]
        let g = Generator(seed: 32)
        let x = Tensor.randn(geo.inputShape, generator: g)
        let w = try Tensor.randn(geo.weightShape, generator: g) * 0.05
        let gy = Tensor.randn(geo.outputShape, generator: g)
        let reference = Self.im2colForward(geo, input: x, weight: w, bias: nil)
        let refGrads = Self.im2colBackward(geo, input: x, weight: w, gradOut: gy, needBias: false)
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<3 {
                guard let fast = Kernels.convForwardDNNL(geo, input: x, weight: w, bias: nil, keep: true), let saved = fast.saved
                else { failures.withLock { $0 += 1 }; return }
                let grads = Kernels.convBackwardDNNL(saved, input: x, weight: w, gradOut: gy, needInput: true, needWeight: true,
                                                     needBias: false)
                let ok = Closeness.mismatch(fast.out, reference, rtol: 1e-4, atol: 1e-5) == nil
                    && grads.input.map { Closeness.mismatch($0, refGrads.input!, rtol: 1e-4, atol: 1e-4) == nil } == true
                    && grads.weight.map { Closeness.mismatch($0, refGrads.weight!, rtol: 1e-4, atol: 1e-3) == nil } == true
                if !ok { failures.withLock { $0 += 1 } }
            }
        }
        #expect(failures.withLock { $0 } == 0)
    }

    /// Plans are cached per geometry and thread count.
    @Test func plansAreCached() throws {
        let geo = Self.geometries[2]
        let a = try #require(DNNLConvPlan.plan(for: geo, hasBias: true, threads: 1))
        let b = try #require(DNNLConvPlan.plan(for: geo, hasBias: true, threads: 1))
        #expect(a === b)
    }
}
