import Testing
@testable import TandemCore

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
}
