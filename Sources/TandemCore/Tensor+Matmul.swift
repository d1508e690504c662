import Foundation
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

extension Tensor {
    /// Matrix product with NumPy semantics: 1-D operands are promoted (and the added
    /// dimension removed afterwards); batch dimensions broadcast.
    /// `[..., m, k] · [..., k, n] → [..., m, n]`.
    ///
    /// Under `autocast`, float32 operands are first converted to the autocast dtype.
    /// bfloat16 operands (both) run on oneDNN's bfloat16 matmul (float32 accumulation,
    /// bfloat16 result) where it is available. float16 operands, and bfloat16 ones oneDNN
    /// refuses, are multiplied in float32 and the result rounded to their dtype.
    public static func matmul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        if let low = Autocast.castTarget(a, b) { return try matmul(a.to(low), b.to(low)) }
        if a.dtype == .float16, b.dtype == .float16 {
            return try Autocast.off { try matmul(a.to(.float32), b.to(.float32)) }.to(a.dtype)
        }
        if a.dtype != .bfloat16 { try Kernels.requireFloat(a, "matmul") }
        guard a.dtype == b.dtype else {
            throw TensorError.dtypeMismatch(op: "matmul", message: "\(a.dtype) and \(b.dtype)")
        }
        guard a.rank >= 1, b.rank >= 1 else {
            throw TensorError.shapeMismatch(op: "matmul", message: "operands must have at least one dimension, got \(a.shape) and \(b.shape)")
        }
        let a2 = a.rank == 1 ? try a.unsqueeze(0) : a
        let b2 = b.rank == 1 ? try b.unsqueeze(1) : b
        var out = try batchedMatmul(a2, b2)
        if a.rank == 1 { out = try out.squeeze(-2) }
        if b.rank == 1 { out = try out.squeeze(-1) }
        return out
    }

    /// Batched matmul of operands with rank ≥ 2 and broadcastable batch dimensions.
    static func batchedMatmul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1]
        let k2 = b.shape[b.rank - 2], n = b.shape[b.rank - 1]
        guard k == k2 else {
            throw TensorError.shapeMismatch(op: "matmul", message: "\(a.shape) · \(b.shape): inner dimensions \(k) and \(k2) differ")
        }
        let batch = try Shape.broadcast(Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)), op: "matmul")
        let out = Tensor(uninitializedShape: batch + [m, n], dtype: a.dtype)
        guard try matmulInto(out, a, b, batch: batch, m: m, n: n, k: k) else {
            // bfloat16 that oneDNN refused: float32 compute on the (exactly) widened operands.
            return try batchedMatmul(a.to(.float32), b.to(.float32)).to(a.dtype)
        }
        return record("matmul", out, inputs: [a, b]) { g in
            let (ad, bd) = (a.detach(), b.detach())
            let g = g.dtype == out.dtype ? g : g.to(out.dtype)
            // When b is a transposed view (linear's weight.t()), dB is computed as (gᵀ·a)ᵀ, so that
            // the gradient reaching the untransposed tensor is contiguous, not a strided transpose.
            let bTransposed = b.rank == 2 && b.strides[1] != 1 && b.strides[0] == 1
            return [a.requiresGrad ? try batchedMatmul(g, bd.transpose(-1, -2)).sumTo(a.shape) : nil,
                    b.requiresGrad ? try (bTransposed && a.rank == 2
                                          ? batchedMatmul(g.transpose(-1, -2), ad).transpose(-1, -2)
                                          : batchedMatmul(ad.transpose(-1, -2), g)).sumTo(b.shape) : nil]
        }
    }

    /// Writes the product into `out`; false when a bfloat16 product cannot run on oneDNN.
    private static func matmulInto(_ out: Tensor, _ a: Tensor, _ b: Tensor, batch: [Int], m: Int, n: Int, k: Int) throws -> Bool {
        func prepared(_ t: Tensor) -> (Tensor, Bool, Int) {
            let r = t.rank
            if let layout = Kernels.gemmLayout(rowStride: t.strides[r - 2], colStride: t.strides[r - 1],
                                              rows: t.shape[r - 2], cols: t.shape[r - 1]) {
                return (t, layout.transposed, layout.ld)
            }
            let c = Kernels.contiguousCopy(t)
            return (c, false, Swift.max(t.shape[r - 1], 1))
        }
        let (ap, ta, lda) = prepared(a)
        let (bp, tb, ldb) = prepared(b)
        let batchCount = Shape.count(batch)
        let aBatchStrides = Kernels.broadcastStrides(ap.batchView, to: batch)
        let bBatchStrides = Kernels.broadcastStrides(bp.batchView, to: batch)
        let batchStrides = Shape.contiguousStrides(batch)
        /// Element offsets of batch `bi`'s a and b matrices (broadcast batch dimensions repeat).
        func operandOffsets(_ bi: Int) -> (Int, Int) {
            var rest = bi, ao = 0, bo = 0
            for d in 0..<batch.count {
                let c = rest / batchStrides[d]
                rest %= batchStrides[d]
                ao += c * aBatchStrides[d]
                bo += c * bBatchStrides[d]
            }
            return (ao, bo)
        }
        func run<T: FloatElement>(_: T.Type) {
            let aBase = ap.elementPointer(T.self), bBase = bp.elementPointer(T.self), cBase = out.elementPointer(T.self)
            if m == 0 || n == 0 { return }
            if k == 0 { cBase.update(repeating: 0, count: out.count); return }
            // Mid-size float32 products on oneDNN (DNNLMatmul.prefersFloat32), else OpenBLAS.
            let viaDNNL = T.self == Float.self && DNNLMatmul.prefersFloat32(m: m, n: n, k: k)
            let work = m * n * k
            if !viaDNNL, batchCount >= Tandem.numThreads, work < Kernels.batchParallelGemmWork {
                // Many small products: one whole product per thread at a time, not each one split.
                nonisolated(unsafe) let (ab, bb, cb) = (aBase, bBase, cBase)
                Parallel.forRanges(batchCount, costPerItem: work) { range in
                    for bi in range {
                        let (ao, bo) = operandOffsets(bi)
                        Kernels.gemm(T.self, transA: ta, transB: tb, m: m, n: n, k: k, a: ab + ao, lda: lda, b: bb + bo,
                                     ldb: ldb, c: cb + bi * m * n, ldc: n, threads: 1)
                    }
                }
                return
            }
            for bi in 0..<batchCount {
                let (ao, bo) = operandOffsets(bi)
                if viaDNNL, DNNLMatmul.gemm(transA: ta, transB: tb, m: m, n: n, k: k,
                                            a: UnsafeMutableRawPointer(aBase + ao), lda: lda, b: UnsafeMutableRawPointer(bBase + bo),
                                            ldb: ldb, c: UnsafeMutableRawPointer(cBase + bi * m * n), ldc: n, float32: true) { continue }
                Kernels.gemm(T.self, transA: ta, transB: tb, m: m, n: n, k: k,
                             a: aBase + ao, lda: lda, b: bBase + bo, ldb: ldb, c: cBase + bi * m * n, ldc: n)
            }
        }
        // `ap` and `bp` (copies when an operand is strided) are not used after their pointers
        // were taken: keep them alive until the products are done.
        return withExtendedLifetime((ap, bp)) { () -> Bool in
            if a.dtype == .bfloat16 {
                guard m > 0, n > 0, k > 0 else { return false }
                let aBase = UnsafeMutableRawPointer(ap.elementPointer(UInt16.self)), bBase = UnsafeMutableRawPointer(bp.elementPointer(UInt16.self))
                let cBase = UnsafeMutableRawPointer(out.elementPointer(UInt16.self))
                for bi in 0..<batchCount {
                    let (ao, bo) = operandOffsets(bi)
                    guard DNNLMatmul.gemm(transA: ta, transB: tb, m: m, n: n, k: k, a: aBase + 2 * ao, lda: lda,
                                          b: bBase + 2 * bo, ldb: ldb, c: cBase + 2 * bi * m * n, ldc: n) else { return false }
                }
                return true
            }
            if a.dtype == .float64 { run(Double.self) } else { run(Float.self) }
            return true
        }
    }

    /// The batch dimensions of a rank ≥ 2 tensor as a view (for broadcasting strides).
    fileprivate var batchView: Tensor {
        restrided(shape: Array(shape.dropLast(2)), strides: Array(strides.dropLast(2)), offset: offset)
    }

    /// `torch.bmm`: `[B, m, k] · [B, k, n] → [B, m, n]` (no broadcasting).
    public static func bmm(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        guard a.rank == 3, b.rank == 3, a.shape[0] == b.shape[0] else {
            throw TensorError.shapeMismatch(op: "bmm", message: "needs [B, m, k] and [B, k, n], got \(a.shape) and \(b.shape)")
        }
        return try matmul(a, b)
    }

    /// `F.linear`: `x [..., in] · weightᵀ [in, out] + bias [out] → [..., out]`.
    /// Under `autocast` it runs in the autocast dtype and returns that dtype.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        guard weight.rank == 2, x.rank >= 1, x.shape[x.rank - 1] == weight.shape[1] else {
            throw TensorError.shapeMismatch(op: "linear", message: "input \(x.shape) does not fit weight \(weight.shape) (expects [..., \(weight.rank == 2 ? weight.shape[1] : -1)])")
        }
        if let bias, bias.shape != [weight.shape[0]] {
            throw TensorError.shapeMismatch(op: "linear", message: "bias \(bias.shape) for weight \(weight.shape)")
        }
        let flat = try x.reshape([-1, weight.shape[1]])
        // Under autocast, weight and bias join the low dtype (PyTorch's addmm), so the output is
        // low too. The weight is converted before the transpose, so the conversion reads it in order.
        let low = Autocast.castTarget(x, weight, bias)
        var out = try matmul(flat, (low.map { weight.to($0) } ?? weight).t())
        if let bias { out = try out + (low.map { bias.to($0) } ?? bias) }
        return try out.reshape(Array(x.shape.dropLast()) + [weight.shape[0]])
    }

    /// Einstein summation for the common two-operand contractions, e.g. `"bij,bjk->bik"`,
    /// `"ij,kj->ik"`, `"bhld,bhmd->bhlm"`. Each label appears in one or both inputs; labels
    /// missing from the output are summed. Lowered to permute + batched matmul.
    public static func einsum(_ equation: String, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        let parts = equation.replacingOccurrences(of: " ", with: "").components(separatedBy: "->")
        let inputs = parts.first?.components(separatedBy: ",") ?? []
        guard parts.count == 2, inputs.count == 2 else {
            throw TensorError.invalidArgument(op: "einsum", message: "equation '\(equation)' must look like 'ij,jk->ik'")
        }
        let la = Array(inputs[0]), lb = Array(inputs[1]), lo = Array(parts[1])
        guard la.count == a.rank, lb.count == b.rank, Set(la).count == la.count, Set(lb).count == lb.count,
              Set(lo).count == lo.count, lo.allSatisfy({ la.contains($0) || lb.contains($0) }) else {
            throw TensorError.invalidArgument(op: "einsum", message: "equation '\(equation)' does not fit shapes \(a.shape) and \(b.shape) (repeated or unknown labels)")
        }
        var size: [Character: Int] = [:]
        for (l, s) in Array(zip(la, a.shape)) + Array(zip(lb, b.shape)) {
            if let known = size[l], known != s, known != 1, s != 1 {
                throw TensorError.shapeMismatch(op: "einsum", message: "label '\(l)' has sizes \(known) and \(s)")
            }
            size[l] = Swift.max(size[l] ?? 1, s)
        }
        // Classify labels: batch (in a, b, out), m (a, out), n (b, out), contracted (a, b, not out).
        let batch = lo.filter { la.contains($0) && lb.contains($0) }
        let mLabels = lo.filter { la.contains($0) && !lb.contains($0) }
        let nLabels = lo.filter { lb.contains($0) && !la.contains($0) }
        let kLabels = la.filter { lb.contains($0) && !lo.contains($0) }
        // Labels only in one input and not in the output are summed out first.
        var a1 = a, la1 = la
        for l in la where !lb.contains(l) && !lo.contains(l) {
            a1 = try a1.sum(axes: [la1.firstIndex(of: l)!]); la1.removeAll { $0 == l }
        }
        var b1 = b, lb1 = lb
        for l in lb where !la.contains(l) && !lo.contains(l) {
            b1 = try b1.sum(axes: [lb1.firstIndex(of: l)!]); lb1.removeAll { $0 == l }
        }
        func sz(_ ls: [Character]) -> Int { ls.reduce(1) { $0 * size[$1]! } }
        let ap = try a1.permute((batch + mLabels + kLabels).map { la1.firstIndex(of: $0)! })
            .expand(batch.map { size[$0]! } + mLabels.map { size[$0]! } + kLabels.map { size[$0]! })
            .reshape([sz(batch), sz(mLabels), sz(kLabels)])
        let bp = try b1.permute((batch + kLabels + nLabels).map { lb1.firstIndex(of: $0)! })
            .expand(batch.map { size[$0]! } + kLabels.map { size[$0]! } + nLabels.map { size[$0]! })
            .reshape([sz(batch), sz(kLabels), sz(nLabels)])
        let product = try matmul(ap, bp).reshape((batch + mLabels + nLabels).map { size[$0]! })
        let order = lo.map { (batch + mLabels + nLabels).firstIndex(of: $0)! }
        return try product.permute(order).contiguous()
    }
}
