import Testing
import TandemCore
import TandemTestSupport

@Suite struct ValueSemanticsTests {
    @Test func copyThenMutateLeavesOriginal() throws {
        let a = Tensor([1, 2, 3] as [Float])
        var b = a
        try b += 1
        #expect(a.toFloatArray() == [1, 2, 3])
        #expect(b.toFloatArray() == [2, 3, 4])
    }

    @Test func fillOnCopyIsCopyOnWrite() {
        let a = Tensor.zeros([2, 2])
        var b = a
        b.fill(5)
        #expect(a.toFloatArray() == [0, 0, 0, 0])
        #expect(b.toFloatArray() == [5, 5, 5, 5])
    }

    @Test func viewsReadSharedStorageButWritesDoNotLeak() throws {
        let a = Tensor([0, 1, 2, 3, 4, 5] as [Float], shape: [2, 3])
        var t = try a.transpose(0, 1)
        #expect(t.shape == [3, 2])
        #expect(t.toFloatArray() == [0, 3, 1, 4, 2, 5])
        t.fill(9)
        #expect(a.toFloatArray() == [0, 1, 2, 3, 4, 5])
    }
}
