import Testing
@testable import TandemCore
import TandemTestSupport

/// GELU on oneDNN's eltwise kernels (float32, 4,096 elements or more) against the same function
/// computed in float64 by the Swift kernels.
@Suite struct DNNLEltwiseTests {
    @Test(arguments: [Tensor.GeluApproximation.none, .tanh])
    func geluMatchesFloat64(approximate: Tensor.GeluApproximation) throws {
        // More than two blocks and a remainder; values over the range where erf and tanh bend.
        let count = 2 * DNNLEltwise.blockElements + 1_001
        let x = try Tensor.randn([count], generator: Generator(seed: 51)) * 4
        let upstream = Tensor.randn([count], generator: Generator(seed: 52))
        // oneDNN takes it (else this would test the Swift kernels against themselves).
        let probe = Tensor.zeros([count])
        #expect(DNNLEltwise.forward(approximate == .none ? .geluErf : .geluTanh, src: x.rawElements, dst: probe.rawElements,
                                    count: count))
        let input = x.requiringGrad()
        let y = try input.gelu(approximate: approximate)
        try y.backward(upstream)
        let wide = x.to(.float64).requiringGrad()
        let reference = try wide.gelu(approximate: approximate)
        try reference.backward(upstream.to(.float64))
        #expect(Closeness.mismatch(y.to(.float64), reference, rtol: 1e-5, atol: 1e-6, "output") == nil)
        #expect(Closeness.mismatch(try #require(input.grad).to(.float64), try #require(wide.grad), rtol: 1e-5, atol: 1e-5,
                                   "gradient") == nil)
    }

    @Test func geluKeepsNaNAndTakesStridedInput() throws {
        var values = Tensor.randn([64, 100], generator: Generator(seed: 53)).toFloatArray()
        values[123] = .nan
        let x = try Tensor(values, shape: [64, 100]).transpose(0, 1)
        let y = try x.gelu()
        let expected = try x.to(.float64).gelu()
        #expect(y.shape == [100, 64])
        #expect(y.toFloatArray().filter(\.isNaN).count == 1)
        #expect(Closeness.mismatch(try y.to(.float64).replacingNonFinite(with: 0), try expected.replacingNonFinite(with: 0),
                                   rtol: 1e-5, atol: 1e-6) == nil)
    }
}
