import Testing
@testable import TandemCore
import TandemTestSupport

@Suite struct GemmTests {
    /// `Kernels.gemm` splits large products into blocks of rows (tall C) or columns (wide C),
    /// one OpenBLAS call each: every transpose, padded leading dimensions, a partial last
    /// block and `beta` accumulation agree with a float64 loop, in float32 and float64, on 2
    /// and 3 threads whatever the machine has.
    @Test(arguments: [(200, 70, 90, 2), (40, 300, 64, 2), (200, 70, 90, 3)])
    func splitProductsAgreeWithALoop(m: Int, n: Int, k: Int, threads: Int) {
        #expect(m * n * k >= Kernels.parallelGemmWork)
        var seed: UInt64 = 7
        func next() -> Double {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(seed >> 40) / Double(1 << 24) - 0.5
        }
        for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
            // Stored shapes, each with 3 spare columns of padding.
            let (aRows, aCols) = transA ? (k, m) : (m, k)
            let (bRows, bCols) = transB ? (n, k) : (k, n)
            let lda = aCols + 3, ldb = bCols + 3, ldc = n + 3
            let a = (0..<(aRows * lda)).map { _ in next() }, b = (0..<(bRows * ldb)).map { _ in next() }
            let c0 = (0..<(m * ldc)).map { _ in next() }
            var want = c0
            for i in 0..<m {
                for j in 0..<n {
                    var total = 0.0
                    for p in 0..<k { total += a[transA ? p * lda + i : i * lda + p] * b[transB ? j * ldb + p : p * ldb + j] }
                    want[i * ldc + j] = total + 0.5 * c0[i * ldc + j]
                }
            }
            var doubles = c0
            a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in doubles.withUnsafeMutableBufferPointer { pc in
                Kernels.gemm(Double.self, transA: transA, transB: transB, m: m, n: n, k: k, a: pa.baseAddress!, lda: lda,
                             b: pb.baseAddress!, ldb: ldb, c: pc.baseAddress!, ldc: ldc, beta: 0.5, threads: threads)
            } } }
            let af = a.map { Float($0) }, bf = b.map { Float($0) }
            var floats = c0.map { Float($0) }
            af.withUnsafeBufferPointer { pa in bf.withUnsafeBufferPointer { pb in floats.withUnsafeMutableBufferPointer { pc in
                Kernels.gemm(Float.self, transA: transA, transB: transB, m: m, n: n, k: k, a: pa.baseAddress!, lda: lda,
                             b: pb.baseAddress!, ldb: ldb, c: pc.baseAddress!, ldc: ldc, beta: 0.5, threads: threads)
            } } }
            let worstDouble = zip(doubles, want).map { Swift.abs($0 - $1) }.max()!
            let worstFloat = zip(floats, want).map { Swift.abs(Double($0) - $1) }.max()!
            #expect(worstDouble < 1e-12, "transA \(transA), transB \(transB)")
            #expect(worstFloat < 1e-4, "transA \(transA), transB \(transB)")
        }
    }

    /// A batch of small products (as Mamba-2's SSD makes) runs one product per thread: with
    /// broadcast and transposed operands it agrees with the products one at a time.
    @Test func batchesOfSmallProductsRunOnePerThread() throws {
        let g = Generator(seed: 3)
        let a = Tensor.randn([6, 1, 40, 24], generator: g), b = try Tensor.randn([1, 5, 30, 24], generator: g).transpose(-1, -2)
        #expect(40 * 30 * 24 < Kernels.batchParallelGemmWork)
        let got = try Tensor.matmul(a, b)
        #expect(got.shape == [6, 5, 40, 30])
        for i in 0..<6 {
            for j in 0..<5 {
                let want = try Tensor.matmul(try a.narrow(axis: 0, start: i, length: 1).reshape([40, 24]),
                                             try b.narrow(axis: 1, start: j, length: 1).reshape([24, 30]))
                let slice = try got.narrow(axis: 0, start: i, length: 1).narrow(axis: 1, start: j, length: 1).reshape([40, 30])
                #expect(Closeness.mismatch(slice, want, rtol: 1e-6, atol: 1e-6, "product \(i), \(j)") == nil)
            }
        }
    }
}
