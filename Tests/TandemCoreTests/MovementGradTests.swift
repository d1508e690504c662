import Testing
import TandemCore
import TandemTestSupport

/// Views, joins and indexing: values and gradient checks.
@Suite struct MovementGradTests {
    static let g = Generator(seed: 13)
    func x(_ shape: [Int]) -> Tensor { Tensor.uniform(shape, low: -2, high: 2, dtype: .float64, generator: Self.g) }
    func expectGrad(_ inputs: [Tensor], _ f: @escaping ([Tensor]) throws -> Tensor) throws {
        let result = try GradCheck.check(inputs, f)
        #expect(result.passed, "\(result.report)")
    }

    @Test func views() throws {
        try expectGrad([x([2, 3, 4])]) { try $0[0].reshape([6, -1]) }
        try expectGrad([x([2, 3, 4])]) { try $0[0].permute([2, 0, 1]).contiguous() }
        try expectGrad([x([2, 3])]) { try $0[0].transpose(0, 1) }
        try expectGrad([x([2, 1, 3])]) { try $0[0].squeeze(1).unsqueeze(0) }
        try expectGrad([x([1, 3])]) { try $0[0].expand([4, 3]) }
        try expectGrad([x([5, 6])]) { try $0[0].slice(axis: 1, start: 1, end: 6, step: 2) }
        try expectGrad([x([5, 6])]) { try $0[0].narrow(axis: 0, start: 1, length: 3) }
        try expectGrad([x([2, 3, 4])]) { try $0[0].flatten(start: 1) }
        try expectGrad([x([3, 4])]) { try $0[0][1] }
    }

    @Test func viewValues() throws {
        let t = Tensor((0..<12).map(Double.init), shape: [3, 4])
        #expect(try t.slice(axis: 1, start: 1, step: 2).toIntArray() == [1, 3, 5, 7, 9, 11])
        #expect(try t.slice(axis: 0, start: -1).toIntArray() == [8, 9, 10, 11])
        #expect(try t.permute([1, 0]).toIntArray() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
        #expect(try t.permute([1, 0]).isContiguous == false)
        #expect(try t.reshape([2, 6]).shape == [2, 6])
        #expect(throws: TensorError.self) { try t.reshape([5, -1]) }
        #expect(throws: TensorError.self) { try t.permute([1, 0]).view([12]) }
        #expect(throws: TensorError.self) { try t.expand([3, 5]) }
    }

    @Test func joins() throws {
        try expectGrad([x([2, 3]), x([4, 3])]) { try Tensor.cat([$0[0], $0[1]], axis: 0) }
        try expectGrad([x([2, 3]), x([2, 1])]) { try Tensor.cat([$0[0], $0[1]], axis: 1) }
        try expectGrad([x([2, 3]), x([2, 3])]) { try Tensor.stack([$0[0], $0[1]], axis: 1) }
        try expectGrad([x([5, 2])]) { xs in
            let parts = try xs[0].split(sizes: [2, 3])
            return try parts[0].sum() * parts[1].mean()
        }
        try expectGrad([x([7, 2])]) { xs in try Tensor.cat(try xs[0].chunk(3).reversed(), axis: 0) }
        try expectGrad([x([2, 3, 4])]) { try $0[0].pad([1, 2, 0, 1], value: 0.5) }
        let chunks = try Tensor.zeros([7]).chunk(3)
        #expect(chunks.map(\.shape) == [[3], [3], [1]])
        let padded = try Tensor([1, 2] as [Float]).pad([1, 1], value: 9)
        #expect(padded.toFloatArray() == [9, 1, 2, 9])
        #expect(throws: TensorError.self) { try Tensor.cat([Tensor.zeros([2, 3]), Tensor.zeros([2, 4])], axis: 0) }
    }

    @Test func indexing() throws {
        let index = Tensor(int64: [2, 0, 2])
        try expectGrad([x([3, 4])]) { try $0[0].indexSelect(axis: 0, index: index) }
        try expectGrad([x([3, 4])]) { try $0[0].indexSelect(axis: 1, index: index) }
        try expectGrad([x([5, 3])]) { try Tensor.embedding(Tensor(int64: [4, 1, 1, 0], shape: [2, 2]), weight: $0[0]) }
        let gatherIndex = Tensor(int64: [0, 2, 1, 1, 0, 0], shape: [2, 3])
        try expectGrad([x([2, 3])]) { try $0[0].gather(axis: 1, index: gatherIndex) }
        try expectGrad([x([3, 3]), x([2, 3])]) { try $0[0].scatterAdd(axis: 0, index: gatherIndex, source: $0[1]) }
        try expectGrad([x([3, 3])]) { try $0[0].triu(diagonal: 1) }
        try expectGrad([x([2, 3, 3])]) { try $0[0].tril() }
        let oh = try Tensor.oneHot(Tensor(int64: [1, 0, 3]), numClasses: 4)
        #expect(oh.toFloatArray() == [0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1])
        let gathered = try Tensor([1, 2, 3, 4] as [Float], shape: [2, 2]).gather(axis: 1, index: Tensor(int64: [1, 0], shape: [2, 1]))
        #expect(gathered.toFloatArray() == [2, 3])
        #expect(throws: TensorError.self) { try Tensor.zeros([3, 2]).indexSelect(axis: 0, index: Tensor(int64: [3])) }
        #expect(throws: TensorError.self) { try Tensor.oneHot(Tensor(int64: [5]), numClasses: 3) }
        // Indices outside the axis are typed errors, for gather and scatter-add alike.
        #expect(throws: TensorError.self) { try Tensor.zeros([2, 2]).gather(axis: 1, index: Tensor(int64: [2, 0], shape: [2, 1])) }
        #expect(throws: TensorError.self) {
            try Tensor.zeros([2, 2]).scatterAdd(axis: 0, index: Tensor(int64: [-1, 0], shape: [1, 2]), source: Tensor.ones([1, 2]))
        }
    }

    @Test func dtypesConvertAndRound() throws {
        let t = Tensor([1.5, -2.25, 3] as [Float])
        #expect(t.to(.float64).toDoubleArray() == [1.5, -2.25, 3])
        #expect(t.to(.int64).toIntArray() == [1, -2, 3])
        #expect(t.to(.float16).toFloatArray() == [1.5, -2.25, 3])
        #expect(t.to(.bfloat16).toFloatArray() == [1.5, -2.25, 3])
        // bfloat16 rounds to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7.
        #expect(BFloat16(Float(1) + Float(0x1p-8)).floatValue == 1)
        #expect(BFloat16(Float(1) + Float(0x1p-8) + Float(0x1p-20)).floatValue == 1 + Float(0x1p-7))
        #expect(BFloat16(Float.infinity).floatValue == .infinity)
        #expect(BFloat16(Float.nan).floatValue.isNaN)
        #expect(Tensor([1, 0, 2], dtype: .bool).toIntArray() == [1, 0, 1])
        #expect(Tensor([255, 3], dtype: .uint8).to(.int32).toIntArray() == [255, 3])
    }

    @Test func randomIsSeeded() {
        let a = Tensor.randn([5], generator: Generator(seed: 3)).toFloatArray()
        let b = Tensor.randn([5], generator: Generator(seed: 3)).toFloatArray()
        #expect(a == b)
        let perm = Tensor.randperm(10, generator: Generator(seed: 1)).toIntArray()
        #expect(perm.sorted() == Array(0..<10))
        let u = Tensor.uniform([1000], low: 2, high: 3, generator: Generator(seed: 2)).toFloatArray()
        #expect(u.allSatisfy { $0 >= 2 && $0 < 3 })
        let bern = Tensor.bernoulli([1000], p: 0.3, generator: Generator(seed: 4)).toFloatArray()
        let mean = bern.reduce(0, +) / 1000
        #expect(mean > 0.25 && mean < 0.35)
    }
}
