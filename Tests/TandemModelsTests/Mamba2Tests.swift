import Foundation
import Testing
import TandemModels
import TandemNN
import TandemTestSupport

/// The Mamba-2 block against the reference (golden file `mamba2_block`), its initialisation,
/// the recurrent step against the chunked forward, and a float64 gradient check.
@Suite struct Mamba2Tests {
    static let golden = try! Golden.load("mamba2_block")

    func expectClose(_ a: Tensor, _ b: Tensor, rtol: Double, atol: Double, _ label: String) {
        let m = Closeness.mismatch(a, b, rtol: rtol, atol: atol, label)
        #expect(m == nil, "\(m ?? "")")
    }

    /// The golden configuration: d_model 16, d_state 8, d_conv 4, expand 2, headdim 8, ngroups 1, chunk 8.
    static func goldenBlock() throws -> Mamba2 {
        let block = Mamba2(dModel: 16, dState: 8, dConv: 4, expand: 2, headdim: 8, ngroups: 1, chunkSize: 8)
        var state: [String: Tensor] = [:]
        for (name, _) in block.stateDict() { state[name] = try golden.tensor(name) }
        try block.loadStateDict(state)
        return block
    }

    @Test func namesAndShapes() {
        let block = Mamba2(dModel: 16, dState: 8, headdim: 8, chunkSize: 8)
        let state = block.stateDict()
        #expect(state.map(\.0) == ["dt_bias", "A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias",
                                   "norm.weight", "out_proj.weight"])
        #expect(state.map(\.1.shape) == [[4], [4], [4], [84, 16], [48, 1, 4], [48], [32], [16, 32]])
        #expect(block.nheads == 4 && block.convDim == 48)
    }

    @Test func referenceInitialisation() {
        let block = Mamba2(dModel: 64, dState: 16, headdim: 4, generator: Generator(seed: 3))   // 32 heads
        let a = block.aLog.value.toDoubleArray().map { Foundation.exp($0) }
        #expect(a.allSatisfy { $0 >= 1 && $0 <= 16 })
        let dt = block.dtBias.value.toDoubleArray().map { Foundation.log1p(Foundation.exp($0)) }   // softplus(dt_bias)
        #expect(dt.allSatisfy { $0 >= 0.001 * 0.999 && $0 <= 0.1 * 1.001 })
        #expect(block.d.value.toDoubleArray().allSatisfy { $0 == 1 })
        #expect(block.norm.weight.value.toDoubleArray().allSatisfy { $0 == 1 })
        // With dtMin below the floor, every step size is at least 1e-4.
        let floored = Mamba2(dModel: 64, dState: 16, headdim: 4, dtMin: 1e-6, dtMax: 1e-5, generator: Generator(seed: 4))
        let dtf = floored.dtBias.value.toDoubleArray().map { Foundation.log1p(Foundation.exp($0)) }
        #expect(dtf.allSatisfy { Swift.abs($0 - 1e-4) < 1e-8 })
    }

    @Test func blockMatchesGolden() throws {
        let g = Self.golden
        let block = try Self.goldenBlock()
        let u = try g.tensor("input").requiringGrad()
        let (values, _) = try block.forward(u, cache: nil)
        var report = "mamba2_block max|Δ|:"
        func check(_ t: Tensor, _ name: String, rtol: Double, atol: Double) throws {
            let ref = try g.tensor(name)
            expectClose(t, ref, rtol: rtol, atol: atol, name)
            report += " \(name) \(Closeness.maxAbsDiff(t, ref)),"
        }
        try check(values.zxbcdt, "inter.zxbcdt", rtol: 1e-4, atol: 1e-5)
        try check(values.xBCAct, "inter.xBC_act", rtol: 1e-4, atol: 1e-5)
        try check(values.dtSoft, "inter.dt_soft", rtol: 1e-4, atol: 1e-5)
        try check(values.ySSD, "inter.y_ssd", rtol: 1e-4, atol: 1e-5)
        try check(values.yNorm, "inter.y_norm", rtol: 1e-4, atol: 1e-5)
        try check(values.output, "output", rtol: 1e-4, atol: 1e-5)
        try (values.output * g.tensor("upstream")).sum().backward()
        try check(try #require(u.grad), "grad.input", rtol: 1e-4, atol: 1e-5)
        for (name, p) in block.namedParameters() {
            try check(try #require(p.grad), "grad." + name, rtol: 1e-3, atol: 1e-5)
        }
        print(report)
    }

    @Test(arguments: [8, 5])
    func recurrentStepEqualsChunkedForward(chunkSize: Int) throws {
        // Two groups, four heads; length 13 (chunk 8 does not divide it, nor 5).
        let block = Mamba2(dModel: 8, dState: 4, dConv: 4, expand: 2, headdim: 4, ngroups: 2, chunkSize: chunkSize,
                           generator: Generator(seed: 7))
        let u = Tensor.randn([2, 13, 8], generator: Generator(seed: 8))
        let chunked = try Tensor.withNoGrad { try block(u) }
        var cache = block.makeCache(batchSize: 2)
        var outs: [Tensor] = []
        for t in 0..<13 {
            outs.append(try Tensor.withNoGrad { try block.step(u.slice(axis: 1, start: t, end: t + 1).squeeze(1), cache: &cache) })
        }
        let stepped = try Tensor.stack(outs, axis: 1)
        expectClose(stepped, chunked, rtol: 1e-4, atol: 1e-5, "step vs chunked")
        print("Mamba2 step vs chunked (chunk \(chunkSize)) max|Δ| \(Closeness.maxAbsDiff(stepped, chunked))")

        // Prefill the first 6 tokens with the chunked form, then continue step by step.
        var prefillCache: Mamba2.InferenceCache? = nil
        let head = try Tensor.withNoGrad { try block(u.slice(axis: 1, start: 0, end: 6), cache: &prefillCache) }
        var resumed = try #require(prefillCache)
        expectClose(resumed.convState, try cachedAfter(block, u, 6).convState, rtol: 1e-5, atol: 1e-6, "conv state")
        var tail: [Tensor] = []
        for t in 6..<13 {
            tail.append(try Tensor.withNoGrad { try block.step(u.slice(axis: 1, start: t, end: t + 1).squeeze(1), cache: &resumed) })
        }
        expectClose(try Tensor.cat([head, Tensor.stack(tail, axis: 1)], axis: 1), chunked, rtol: 1e-4, atol: 1e-5, "prefill + step")
        expectClose(resumed.ssmState, cache.ssmState, rtol: 1e-4, atol: 1e-5, "final ssm state")
        // A chunked pass continuing from a cache equals the single pass.
        var split: Mamba2.InferenceCache? = nil
        let first = try Tensor.withNoGrad { try block(u.slice(axis: 1, start: 0, end: 9), cache: &split) }
        let second = try Tensor.withNoGrad { try block(u.slice(axis: 1, start: 9), cache: &split) }
        expectClose(try Tensor.cat([first, second], axis: 1), chunked, rtol: 1e-4, atol: 1e-5, "chunked from cache")
    }

    /// The cache after stepping through the first `n` tokens.
    func cachedAfter(_ block: Mamba2, _ u: Tensor, _ n: Int) throws -> Mamba2.InferenceCache {
        var cache = block.makeCache(batchSize: u.shape[0])
        for t in 0..<n {
            _ = try Tensor.withNoGrad { try block.step(u.slice(axis: 1, start: t, end: t + 1).squeeze(1), cache: &cache) }
        }
        return cache
    }

    @Test func gradCheckFloat64() throws {
        let block = Mamba2(dModel: 4, dState: 3, dConv: 3, expand: 2, headdim: 4, ngroups: 1, chunkSize: 3,
                           generator: Generator(seed: 5))
        let params = block.parameters()
        let u = Tensor.randn([1, 5, 4], dtype: .float64, generator: Generator(seed: 6))
        let values = params.map { $0.value.to(.float64) }
        let result = try GradCheck.check([u] + values, atol: 1e-5, rtol: 1e-4) { xs in
            for (p, v) in zip(params, xs.dropFirst()) { p.value = v }
            return try block(xs[0])
        }
        #expect(result.passed, "\(result)")
    }

    @Test func badInputIsATensorError() {
        let block = Mamba2(dModel: 8, dState: 4, headdim: 4, chunkSize: 4)
        #expect(throws: TensorError.self) { try block(Tensor.zeros([2, 5, 7])) }
        #expect(throws: TensorError.self) { try block(Tensor.zeros([5, 8])) }
        var cache = block.makeCache(batchSize: 3)
        #expect(throws: TensorError.self) { try block.step(Tensor.zeros([2, 8]), cache: &cache) }
    }
}
