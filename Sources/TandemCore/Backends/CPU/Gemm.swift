import CBLAS

/// Matrix products through OpenBLAS (sgemm/dgemm), split over Tandem's threads.
extension Kernels {
    /// How a matrix view can be handed to GEMM without copying: row-major with a leading
    /// dimension, possibly transposed. nil when a copy is needed.
    static func gemmLayout(rowStride: Int, colStride: Int, rows: Int, cols: Int) -> (transposed: Bool, ld: Int)? {
        if (colStride == 1 || cols == 1) && (rows == 1 || rowStride >= Swift.max(cols, 1)) {
            return (false, rows == 1 ? Swift.max(cols, 1) : rowStride)
        }
        if (rowStride == 1 || rows == 1) && (cols == 1 || colStride >= Swift.max(rows, 1)) {
            return (true, cols == 1 ? Swift.max(rows, 1) : colStride)
        }
        return nil
    }

    /// Products smaller than this many multiply-adds run on one thread.
    static let parallelGemmWork = 1 << 18

    /// A batch of at least as many products as threads, each smaller than this many
    /// multiply-adds, runs one whole product per thread instead of splitting each product.
    static let batchParallelGemmWork = 1 << 22

    /// C[m, n] = A[m, k] · B[k, n] for row-major buffers with leading dimensions, optional transposes.
    ///
    /// OpenBLAS runs single-threaded (see `Tandem.setNumThreads`): a large product is split
    /// into blocks of C's rows (or columns, when C is wider than tall), one OpenBLAS call per
    /// block on Tandem's thread team. OpenBLAS's own thread pool would spin between calls on
    /// the cores that team and oneDNN need, slowing multi-threaded training (docs/BENCHMARKS.md,
    /// issue 2).
    /// `threads` overrides `Tandem.numThreads` (tests).
    static func gemm<T: FloatElement>(_: T.Type, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                      a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
                                      c: UnsafeMutablePointer<T>, ldc: Int, beta: T = 0, threads: Int? = nil) {
        // Read first: the first read of the thread count also sets OpenBLAS to one thread.
        let configured = Tandem.numThreads
        let threads = threads ?? configured
        let byRows = m >= n
        let blockUnit = 8
        let units = ((byRows ? m : n) + blockUnit - 1) / blockUnit
        guard threads > 1, units >= 2, m * n * k >= parallelGemmWork else {
            blasGemm(T.self, transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, beta: beta)
            return
        }
        Parallel.forRanges(units, costPerItem: Parallel.minimumGrain, threads: threads) { range in
            let lo = range.lowerBound * blockUnit
            if byRows {
                let rows = Swift.min(range.upperBound * blockUnit, m) - lo
                blasGemm(T.self, transA: transA, transB: transB, m: rows, n: n, k: k, a: a + (transA ? lo : lo * lda), lda: lda,
                         b: b, ldb: ldb, c: c + lo * ldc, ldc: ldc, beta: beta)
            } else {
                let cols = Swift.min(range.upperBound * blockUnit, n) - lo
                blasGemm(T.self, transA: transA, transB: transB, m: m, n: cols, k: k, a: a, lda: lda,
                         b: b + (transB ? lo * ldb : lo), ldb: ldb, c: c + lo, ldc: ldc, beta: beta)
            }
        }
    }

    /// One OpenBLAS call: C[m, n] = A[m, k] · B[k, n] (+ beta · C).
    private static func blasGemm<T: FloatElement>(_: T.Type, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                                  a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
                                                  c: UnsafeMutablePointer<T>, ldc: Int, beta: T) {
        let ta = transA ? CblasTrans : CblasNoTrans
        let tb = transB ? CblasTrans : CblasNoTrans
        if T.self == Float.self {
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), 1,
                        UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), Int32(lda),
                        UnsafeRawPointer(b).assumingMemoryBound(to: Float.self), Int32(ldb), Float(beta.doubleValue),
                        UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), Int32(ldc))
        } else {
            cblas_dgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), 1,
                        UnsafeRawPointer(a).assumingMemoryBound(to: Double.self), Int32(lda),
                        UnsafeRawPointer(b).assumingMemoryBound(to: Double.self), Int32(ldb), beta.doubleValue,
                        UnsafeMutableRawPointer(c).assumingMemoryBound(to: Double.self), Int32(ldc))
        }
    }
}


extension Kernels {
    /// The operands of a batch of products as GEMM reads them: views GEMM can take as they are
    /// (row-major or transposed, with a leading dimension), contiguous copies otherwise; and a new
    /// output `[batch..., m, n]`.
    static func gemmProblem(_ a: Tensor, _ b: Tensor, batch: [Int], m: Int, n: Int, k: Int) -> GemmProblem {
        func prepared(_ t: Tensor) -> (Tensor, Bool, Int) {
            let r = t.rank
            if let layout = gemmLayout(rowStride: t.strides[r - 2], colStride: t.strides[r - 1], rows: t.shape[r - 2], cols: t.shape[r - 1]) {
                return (t, layout.transposed, layout.ld)
            }
            return (contiguousCopy(t), false, Swift.max(t.shape[r - 1], 1))
        }
        let (ap, ta, lda) = prepared(a)
        let (bp, tb, ldb) = prepared(b)
        let batchCount = Shape.count(batch)
        let aBatchStrides = broadcastStrides(ap.batchView, to: batch)
        let bBatchStrides = broadcastStrides(bp.batchView, to: batch)
        let batchStrides = Shape.contiguousStrides(batch)
        // Element offsets of each product's a and b matrices (broadcast batch dimensions repeat).
        let offsets = (0..<batchCount).map { bi -> (a: Int, b: Int) in
            var rest = bi, ao = 0, bo = 0
            for d in 0..<batch.count {
                let c = rest / batchStrides[d]
                rest %= batchStrides[d]
                ao += c * aBatchStrides[d]
                bo += c * bBatchStrides[d]
            }
            return (ao, bo)
        }
        return GemmProblem(a: ap, transA: ta, lda: lda, b: bp, transB: tb, ldb: ldb,
                           out: Tensor(uninitializedShape: batch + [m, n], dtype: a.dtype), m: m, n: n, k: k,
                           batchCount: batchCount, offsets: offsets)
    }
}

extension Tensor {
    /// The batch dimensions of a rank ≥ 2 tensor as a view (for broadcasting strides).
    fileprivate var batchView: Tensor {
        restrided(shape: Array(shape.dropLast(2)), strides: Array(strides.dropLast(2)), offset: offset)
    }
}
