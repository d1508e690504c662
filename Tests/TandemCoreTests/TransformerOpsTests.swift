import Foundation
import Testing
@testable import TandemCore
import TandemTestSupport

/// Rotary embeddings, SwiGLU, RMSNorm, seeded dropout and the embedding's backward kernel:
/// PyTorch's values (scripts/make_transformer_golden.py) and finite differences in float64.
@Suite struct TransformerOpsTests {
    @Test(arguments: [("basic", 10_000.0), ("offset", 500_000.0)]) func rotaryMatchesHuggingFace(name: String, theta: Double) throws {
        let golden = try Golden.load("transformer_ops")
        let p = "rope.\(name)."
        let x = try golden.tensor(p + "x").requiringGrad()
        let positions = try golden.tensor(p + "positions").toDoubleArray().map { Int($0) }
        let out = try Tensor.rotaryEmbedding(x, positions: positions, theta: theta)
        try out.backward(golden.tensor(p + "upstream"))
        #expect(try golden.mismatch(out, p + "out", rtol: 1e-12, atol: 1e-12) == nil)
        #expect(try golden.mismatch(x.grad, p + "grad_x", rtol: 1e-12, atol: 1e-12) == nil)
    }

    @Test func rmsNormMatchesHuggingFace() throws {
        let golden = try Golden.load("transformer_ops")
        let x = try golden.tensor("rmsnorm.x").requiringGrad(), w = try golden.tensor("rmsnorm.weight").requiringGrad()
        let out = try Tensor.rmsNorm(x, normalizedShape: [x.shape.last!], weight: w, eps: 1e-6)
        try out.backward(golden.tensor("rmsnorm.upstream"))
        #expect(try golden.mismatch(out, "rmsnorm.out", rtol: 1e-10, atol: 1e-12) == nil)
        #expect(try golden.mismatch(x.grad, "rmsnorm.grad_x", rtol: 1e-10, atol: 1e-12) == nil)
        #expect(try golden.mismatch(w.grad, "rmsnorm.grad_weight", rtol: 1e-10, atol: 1e-12) == nil)
    }

    @Test func swigluMLPMatchesHuggingFace() throws {
        let golden = try Golden.load("transformer_ops")
        let x = try golden.tensor("swiglu.x").requiringGrad()
        let names = ["gate_proj", "up_proj", "down_proj"]
        let w = try names.map { try golden.tensor("swiglu.param.\($0).weight").requiringGrad() }
        let hidden = try Tensor.swiglu(gate: Tensor.linear(x, weight: w[0], bias: nil), up: Tensor.linear(x, weight: w[1], bias: nil))
        let out = try Tensor.linear(hidden, weight: w[2], bias: nil)
        try out.backward(golden.tensor("swiglu.upstream"))
        #expect(try golden.mismatch(out, "swiglu.out", rtol: 1e-10, atol: 1e-12) == nil)
        #expect(try golden.mismatch(x.grad, "swiglu.grad_x", rtol: 1e-10, atol: 1e-12) == nil)
        for (name, t) in zip(names, w) {
            #expect(try golden.mismatch(t.grad, "swiglu.grad.\(name).weight", rtol: 1e-10, atol: 1e-12) == nil, "\(name)")
        }
    }

    @Test func gradientChecks() throws {
        let g = Generator(seed: 3)
        let x = Tensor.randn([2, 3, 5, 6], dtype: .float64, generator: g)
        let rope = try GradCheck.check([x]) { try Tensor.rotaryEmbedding($0[0], positions: [0, 3, 4, 9, 2], theta: 100) }
        #expect(rope.passed, "\(rope)")
        let (a, b) = (Tensor.randn([4, 7], dtype: .float64, generator: g), Tensor.randn([4, 7], dtype: .float64, generator: g))
        let swiglu = try GradCheck.check([a, b]) { try Tensor.swiglu(gate: $0[0], up: $0[1]) }
        #expect(swiglu.passed, "\(swiglu)")
        let dropout = try GradCheck.check([a]) { try Tensor.dropout($0[0], p: 0.4, seed: 11) }
        #expect(dropout.passed, "\(dropout)")
        let ids = Tensor(int64: [3, 0, 3, 5, 1, 3], shape: [2, 3])
        let table = Tensor.randn([6, 4], dtype: .float64, generator: g)
        let embedding = try GradCheck.check([table]) { try Tensor.embedding(ids, weight: $0[0]) }
        #expect(embedding.passed, "\(embedding)")
    }

    /// The embedding's backward kernel equals a scatter-add of the rows, for a vocabulary far
    /// larger than the batch and repeated ids, in float32 (any thread count: the threads split columns).
    @Test func embeddingBackwardSumsRepeatedRows() throws {
        let g = Generator(seed: 5)
        let vocabulary = 50_000, d = 130
        let idValues = (0..<300).map { $0 % 7 == 0 ? 42 : Int(g.next() % UInt64(vocabulary)) }
        let ids = Tensor(int64: idValues, shape: [3, 100])
        let table = Tensor.randn([vocabulary, d], generator: g).requiringGrad()
        let upstream = Tensor.randn([3, 100, d], generator: g)
        let out = try Tensor.embedding(ids, weight: table)
        #expect(out.shape == [3, 100, d])
        try out.backward(upstream)
        let grad = try #require(table.grad).toFloatArray(), up = upstream.toFloatArray()
        var expected = [Double](repeating: 0, count: 43 * d)
        for (n, id) in idValues.enumerated() where id == 42 { for j in 0..<d { expected[42 * d + j] += Double(up[n * d + j]) } }
        for j in 0..<d { #expect(Swift.abs(Double(grad[42 * d + j]) - expected[42 * d + j]) < 1e-4) }
        let touched = Set(idValues)
        #expect(grad.enumerated().allSatisfy { touched.contains($0.offset / d) || $0.element == 0 })
    }

    /// Dropout's mask is a function of the seed: the same seed repeats it, another changes it,
    /// about p of the elements are zero, and the kept ones are scaled by 1/(1 − p).
    @Test func dropoutFollowsTheSeed() throws {
        let x = Tensor.ones([100, 100])
        let a = try Tensor.dropout(x, p: 0.25, seed: 1).toFloatArray(), b = try Tensor.dropout(x, p: 0.25, seed: 1).toFloatArray()
        let c = try Tensor.dropout(x, p: 0.25, seed: 2).toFloatArray()
        #expect(a == b && a != c)
        let zeros = a.filter { $0 == 0 }.count
        #expect((2_300...2_700).contains(zeros), "\(zeros) zeros")
        #expect(a.allSatisfy { $0 == 0 || Swift.abs($0 - 1 / 0.75) < 1e-6 })
        #expect(try Tensor.dropout(x, p: 0.25, seed: 1, training: false).toFloatArray() == x.toFloatArray())
        #expect(throws: TensorError.self) { try Tensor.dropout(x, p: 1.5, seed: 1) }
    }

    @Test func rotaryRejectsOddWidthsAndWrongPositions() {
        #expect(throws: TensorError.self) { try Tensor.rotaryEmbedding(Tensor.zeros([2, 3, 5]), positions: [0, 1, 2]) }
        #expect(throws: TensorError.self) { try Tensor.rotaryEmbedding(Tensor.zeros([2, 3, 4]), positions: [0, 1]) }
        #expect(throws: TensorError.self) { try Tensor.embedding(Tensor(int64: [0, 9]), weight: Tensor.zeros([5, 2])) }
    }
}
