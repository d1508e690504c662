import Testing
import TandemCore
import TandemTestSupport

/// Gradient checks and values for reductions, scans, softmax and matmul.
@Suite struct ReduceGradTests {
    static let g = Generator(seed: 12)
    func x(_ shape: [Int]) -> Tensor { Tensor.uniform(shape, low: -2, high: 2, dtype: .float64, generator: Self.g) }
    func expectGrad(_ inputs: [Tensor], _ f: @escaping ([Tensor]) throws -> Tensor) throws {
        let result = try GradCheck.check(inputs, f)
        #expect(result.passed, "\(result.report)")
    }

    @Test func sumsAndMeans() throws {
        try expectGrad([x([2, 3, 4])]) { try $0[0].sum() }
        try expectGrad([x([2, 3, 4])]) { try $0[0].sum(axes: [0, 2]) }
        try expectGrad([x([2, 3, 4])]) { try $0[0].sum(axes: [1], keepDim: true) }
        try expectGrad([x([2, 3, 4])]) { try $0[0].mean(axes: [-1]) }
        try expectGrad([x([4, 3, 2, 2])]) { try $0[0].variance(axes: [0, 2, 3]) }
        try expectGrad([x([4, 3])]) { try $0[0].variance(axes: [1], correction: 0, keepDim: true) }
    }

    @Test func reductionValues() throws {
        let t = Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3])
        #expect(try t.sum(axes: [0]).toFloatArray() == [5, 7, 9])
        #expect(try t.sum(axes: [1]).toFloatArray() == [6, 15])
        #expect(try t.mean().item() == 3.5)
        #expect(try t.prod(axes: [1]).toFloatArray() == [6, 120])
        #expect(Swift.abs(try t.variance().item() - 3.5) < 1e-6)
        let (values, indices) = try t.max(axis: 1)
        #expect(values.toFloatArray() == [3, 6])
        #expect(indices.toIntArray() == [2, 2])
        #expect(indices.dtype == .int64)
        #expect(try t.argmin(axis: 0).toIntArray() == [0, 0, 0])
        #expect(try t.amax(axes: [0, 1]).item() == 6)
        // A large sum keeps its precision (blocked accumulation).
        let big = Tensor.full([1 << 22], 0.1)
        #expect(Swift.abs(try big.sum().item() - 419430.4) < 0.5)
    }

    @Test func extremaGradients() throws {
        let distinct = Tensor([3, -1, 2, 7, 0.5, -4, 1, 6, 2.5, -2, 5, 0], shape: [3, 4], dtype: .float64)
        try expectGrad([distinct]) { try $0[0].max(axis: 1).values }
        try expectGrad([distinct]) { try $0[0].min(axis: 0, keepDim: true).values }
        try expectGrad([distinct]) { try $0[0].amax(axes: [0]) }
        try expectGrad([distinct]) { try $0[0].amin(axes: [1]) }
        // Ties share the gradient equally in amax.
        let tied = Tensor([2, 2, 1] as [Float]).requiringGrad()
        try tied.amax().backward()
        #expect(tied.grad?.toFloatArray() == [0.5, 0.5, 0])
    }

    @Test func logsumexpAndProd() throws {
        try expectGrad([x([3, 5])]) { try $0[0].logsumexp(axes: [1]) }
        try expectGrad([x([3, 5])]) { try $0[0].logsumexp(axes: [0, 1], keepDim: true) }
        try expectGrad([x([3, 4])]) { try $0[0].prod(axes: [1]) }
        try expectGrad([Tensor([1, 0, 3, 0, 2, 5], shape: [2, 3], dtype: .float64)]) { try $0[0].prod() }
        let rows = Tensor([-Float.infinity, -.infinity, 0, 1000], shape: [2, 2])
        let lse = try rows.logsumexp(axes: [1]).toFloatArray()
        #expect(lse[0] == -.infinity)
        #expect(Swift.abs(lse[1] - 1000) < 1e-3)
    }

    @Test func scans() throws {
        try expectGrad([x([3, 5])]) { try $0[0].cumsum(axis: 1) }
        try expectGrad([x([3, 5])]) { try $0[0].cumsum(axis: 0) }
        try expectGrad([x([2, 4])]) { try $0[0].cumprod(axis: 1) }
        try expectGrad([Tensor([1, 0, 2, 3, 0, 0], shape: [2, 3], dtype: .float64)]) { try $0[0].cumprod(axis: 1) }
        #expect(try Tensor([1, 2, 3] as [Float]).cumprod(axis: 0).toFloatArray() == [1, 2, 6])
    }

    @Test func softmaxes() throws {
        try expectGrad([x([3, 5])]) { try $0[0].softmax(axis: 1) }
        try expectGrad([x([2, 4, 3])]) { try $0[0].softmax(axis: 1) }
        try expectGrad([x([3, 5])]) { try $0[0].logSoftmax(axis: -1) }
        try expectGrad([x([2, 4, 3])]) { try $0[0].logSoftmax(axis: 0) }
        let shifted = try Tensor([1000, 1001, 1002] as [Float]).softmax(axis: 0).toFloatArray()
        #expect(shifted.allSatisfy { $0.isFinite })
        #expect(Swift.abs(shifted.reduce(0, +) - 1) < 1e-6)
    }

    @Test func matmulsAndEinsum() throws {
        try expectGrad([x([3, 4]), x([4, 2])]) { try Tensor.matmul($0[0], $0[1]) }
        try expectGrad([x([2, 1, 3, 4]), x([3, 4, 2])]) { try Tensor.matmul($0[0], $0[1]) }
        try expectGrad([x([4]), x([4, 3])]) { try Tensor.matmul($0[0], $0[1]) }
        try expectGrad([x([2, 4]), x([4])]) { try Tensor.matmul($0[0], $0[1]) }
        try expectGrad([x([2, 3, 4]), x([2, 4, 5])]) { try Tensor.bmm($0[0], $0[1]) }
        try expectGrad([x([4, 3]), x([4, 2])]) { try Tensor.matmul($0[0].t(), $0[1]) }
        try expectGrad([x([2, 3, 5]), x([4, 5]), x([4])]) { try Tensor.linear($0[0], weight: $0[1], bias: $0[2]) }
        try expectGrad([x([2, 3, 4]), x([2, 4, 5])]) { try Tensor.einsum("bij,bjk->bik", $0[0], $0[1]) }
        try expectGrad([x([3, 4]), x([5, 4])]) { try Tensor.einsum("ij,kj->ik", $0[0], $0[1]) }
        try expectGrad([x([2, 2, 3, 4]), x([2, 2, 5, 4])]) { try Tensor.einsum("bhld,bhmd->bhlm", $0[0], $0[1]) }
        try expectGrad([x([3, 4]), x([4])]) { try Tensor.einsum("ij,j->i", $0[0], $0[1]) }
        // einsum agrees with matmul.
        let a = x([3, 4]), b = x([4, 2])
        #expect(Closeness.mismatch(try Tensor.einsum("ik,kj->ij", a, b), try Tensor.matmul(a, b), rtol: 1e-12, atol: 1e-12) == nil)
        #expect(throws: TensorError.self) { try Tensor.matmul(Tensor.zeros([2, 3]), Tensor.zeros([4, 2])) }
    }

    @Test func matmulOnBroadcastRowsCopies() throws {
        // A row expanded with stride 0 must not be handed to GEMM as if it were a matrix.
        let row = try Tensor([1, 2] as [Float], shape: [1, 2]).expand([3, 2])
        let out = try Tensor.matmul(row, Tensor([1, 0, 0, 1] as [Float], shape: [2, 2]))
        #expect(out.toFloatArray() == [1, 2, 1, 2, 1, 2])
    }
}
