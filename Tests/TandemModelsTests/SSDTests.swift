import Testing
import TandemModels
import TandemNN
import TandemTestSupport

/// Mamba-2's chunked SSD against the reference (golden file `ssd_mamba2`), against the
/// sequential scan for chunk sizes that do and do not divide the length, and a float64
/// finite-difference gradient check.
@Suite struct SSDTests {
    static let golden = try! Golden.load("ssd_mamba2")

    func expectClose(_ a: Tensor, _ b: Tensor, rtol: Double, atol: Double, _ label: String) {
        let m = Closeness.mismatch(a, b, rtol: rtol, atol: atol, label)
        #expect(m == nil, "\(m ?? "")")
    }

    /// Random SSD operands with Mamba-like decays (a = −exp(A_log)·dt < 0).
    static func operands(batch: Int, length: Int, heads: Int, headdim: Int, dState: Int, dtype: DType = .float64,
                         seed: UInt64) -> [Tensor] {
        let g = Generator(seed: seed)
        let x = Tensor.randn([batch, length, heads, headdim], dtype: dtype, generator: g)
        let a = try! -(Tensor.uniform([batch, length, heads], low: 0.01, high: 0.8, dtype: dtype, generator: g))
        let b = Tensor.randn([batch, length, heads, dState], dtype: dtype, generator: g)
        let c = Tensor.randn([batch, length, heads, dState], dtype: dtype, generator: g)
        return [x, a, b, c]
    }

    @Test func segsumMatchesGolden() throws {
        let out = try segsum(Self.golden.tensor("segsum_in"))
        expectClose(out, try Self.golden.tensor("segsum_out"), rtol: 1e-12, atol: 1e-14, "segsum")
    }

    @Test func float64MatchesGolden() throws {
        let g = Self.golden
        let blockLength = Int(try g.tensor("block_len").item())
        let inputs = try ["X", "A", "B", "C"].map { try g.tensor($0).requiringGrad() }
        let (y, final) = try ssd(x: inputs[0], a: inputs[1], b: inputs[2], c: inputs[3], blockLength: blockLength)
        expectClose(y, try g.tensor("Y"), rtol: 1e-10, atol: 1e-12, "Y")
        expectClose(final, try g.tensor("final_state"), rtol: 1e-10, atol: 1e-12, "final_state")
        try (y * g.tensor("upstream")).sum().backward()
        var report = "ssd_mamba2 float64 max|Δ|: Y \(Closeness.maxAbsDiff(y, try g.tensor("Y"))), final_state \(Closeness.maxAbsDiff(final, try g.tensor("final_state")))"
        for (name, t) in zip(["X", "A", "B", "C"], inputs) {
            let grad = try #require(t.grad)
            expectClose(grad, try g.tensor("grad_" + name), rtol: 1e-10, atol: 1e-12, "grad_" + name)
            report += ", grad_\(name) \(Closeness.maxAbsDiff(grad, try g.tensor("grad_" + name)))"
        }
        print(report)
    }

    @Test func float32MatchesGolden() throws {
        let g = Self.golden
        let inputs = try ["X", "A", "B", "C"].map { try g.tensor($0).to(.float32).requiringGrad() }
        let (y, final) = try ssd(x: inputs[0], a: inputs[1], b: inputs[2], c: inputs[3], blockLength: 8)
        #expect(y.dtype == .float32 && final.dtype == .float32)
        expectClose(y, try g.tensor("Y_f32"), rtol: 1e-4, atol: 1e-5, "Y_f32")
        expectClose(final, try g.tensor("final_state_f32"), rtol: 1e-4, atol: 1e-5, "final_state_f32")
        try (y * g.tensor("upstream").to(.float32)).sum().backward()
        var report = "ssd_mamba2 float32 max|Δ| vs *_f32: Y \(Closeness.maxAbsDiff(y, try g.tensor("Y_f32"))), final_state \(Closeness.maxAbsDiff(final, try g.tensor("final_state_f32")))"
        for (name, t) in zip(["X", "A", "B", "C"], inputs) {
            let grad = try #require(t.grad)
            expectClose(grad, try g.tensor("grad_\(name)_f32"), rtol: 1e-4, atol: 1e-5, "grad_\(name)_f32")
            report += ", grad_\(name) \(Closeness.maxAbsDiff(grad, try g.tensor("grad_\(name)_f32")))"
        }
        print(report)
    }

    @Test(arguments: [1, 4, 8, 5, 7, 13, 64])
    func chunkedEqualsSequential(blockLength: Int) throws {
        // Length 24: 1, 4, 8 divide it; 5, 7, 13 do not; 64 is longer than the sequence.
        let ops = Self.operands(batch: 2, length: 24, heads: 3, headdim: 4, dState: 5, seed: 11)
        let initial = Tensor.randn([2, 3, 4, 5], dtype: .float64, generator: Generator(seed: 12))
        for start in [nil, initial] {
            let chunked = ops.map { $0.requiringGrad() }, seq = ops.map { $0.requiringGrad() }
            let s0 = start?.requiringGrad(), s1 = start?.requiringGrad()
            let r1 = try ssd(x: chunked[0], a: chunked[1], b: chunked[2], c: chunked[3], blockLength: blockLength, initialStates: s0)
            let r2 = try ssdSequential(x: seq[0], a: seq[1], b: seq[2], c: seq[3], initialStates: s1)
            expectClose(r1.y, r2.y, rtol: 1e-10, atol: 1e-12, "y Q=\(blockLength)")
            expectClose(r1.finalState, r2.finalState, rtol: 1e-10, atol: 1e-12, "final Q=\(blockLength)")
            // Both outputs enter the loss so the state path is checked too.
            let up = Tensor.randn(r1.y.shape, dtype: .float64, generator: Generator(seed: 13))
            let upState = Tensor.randn(r1.finalState.shape, dtype: .float64, generator: Generator(seed: 14))
            try ((r1.y * up).sum() + (r1.finalState * upState).sum()).backward()
            try ((r2.y * up).sum() + (r2.finalState * upState).sum()).backward()
            for k in 0..<4 {
                expectClose(try #require(chunked[k].grad), try #require(seq[k].grad), rtol: 1e-9, atol: 1e-11, "grad \(k) Q=\(blockLength)")
            }
            if let s0, let s1 {
                expectClose(try #require(s0.grad), try #require(s1.grad), rtol: 1e-9, atol: 1e-11, "grad initial Q=\(blockLength)")
            }
        }
    }

    @Test func float32ChunkedEqualsSequential() throws {
        let ops = Self.operands(batch: 1, length: 37, heads: 2, headdim: 3, dState: 4, dtype: .float32, seed: 21)
        let r1 = try ssd(x: ops[0], a: ops[1], b: ops[2], c: ops[3], blockLength: 16)
        let r2 = try ssdSequential(x: ops[0], a: ops[1], b: ops[2], c: ops[3])
        expectClose(r1.y, r2.y, rtol: 1e-4, atol: 1e-5, "y f32")
        expectClose(r1.finalState, r2.finalState, rtol: 1e-4, atol: 1e-5, "final f32")
    }

    @Test func gradCheckFloat64() throws {
        // Length 7 in chunks of 3 (padded), with an initial state; y and the final state both checked.
        let ops = Self.operands(batch: 1, length: 7, heads: 2, headdim: 2, dState: 3, seed: 31)
        let initial = Tensor.randn([1, 2, 2, 3], dtype: .float64, generator: Generator(seed: 32))
        let result = try GradCheck.check(ops + [initial], atol: 1e-6, rtol: 1e-5) { xs in
            let r = try ssd(x: xs[0], a: xs[1], b: xs[2], c: xs[3], blockLength: 3, initialStates: xs[4])
            return try Tensor.cat([r.y.flatten(), r.finalState.flatten()])
        }
        #expect(result.passed, "\(result)")
    }

    @Test func badShapesAreTensorErrors() {
        let ops = Self.operands(batch: 1, length: 4, heads: 2, headdim: 2, dState: 3, seed: 41)
        #expect(throws: TensorError.self) { try ssd(x: ops[0], a: ops[2], b: ops[2], c: ops[3], blockLength: 2) }
        #expect(throws: TensorError.self) { try ssd(x: ops[0], a: ops[1], b: ops[2], c: ops[3], blockLength: 0) }
        #expect(throws: TensorError.self) {
            try ssd(x: ops[0], a: ops[1], b: ops[2], c: ops[3], blockLength: 2, initialStates: Tensor.zeros([1, 2, 2, 2], dtype: .float64))
        }
    }
}
