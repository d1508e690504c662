import Foundation

/// Scaled dot-product attention, tiled as FlashAttention (Dao et al. 2022, and its v2 loop
/// order): for each block of query rows the key/value blocks stream through an online softmax
/// (running maximum, running sum, rescaled accumulator), so no `[Lq, Lk]` matrix is ever held;
/// the forward pass keeps only each row's log-sum-exp, and the backward pass recomputes the
/// probabilities block by block. Tile products run on OpenBLAS (one thread each); the work is
/// split over (batch, key/value head) items, so grouped-query heads that share a key/value head
/// accumulate its gradients on one thread without races. Memory: O((Lq + Lk)·d) per item plus
/// two `[64, 64]` tiles.

/// The shapes and options of one attention call.
struct AttentionProblem: Sendable {
    /// Batch, query heads, key/value heads (divides `heads`), query and key lengths, head sizes.
    let batch: Int, heads: Int, kvHeads: Int, lq: Int, lk: Int, d: Int, dv: Int
    let scale: Double
    /// Top-left aligned causal mask (`j ≤ i`), as PyTorch's `is_causal`.
    let causal: Bool
    /// An additive float mask, contiguous `[mb, mh, Lq, Lk]` with `mb` 1 or `batch` and `mh` 1 or
    /// `heads` (−∞ masks out), or nil.
    let mask: Tensor?
    /// Dropout probability on the attention weights, and the seed of its counter-based mask.
    let dropout: Double
    let seed: UInt64

    var group: Int { heads / kvHeads }

    /// The additive mask's offset of row (b, h, i), and whether it has one.
    @inline(__always) func maskRow(_ b: Int, _ h: Int, _ i: Int) -> Int? {
        guard let mask else { return nil }
        let mb = mask.shape[0], mh = mask.shape[1]
        return (((mb == 1 ? 0 : b) * mh + (mh == 1 ? 0 : h)) * lq + i) * lk
    }

    /// 1/(1 − p) where the dropout keeps element (b, h, i, j), else 0: a hash of the seed and the
    /// position (splitmix64), so the backward pass regenerates the forward's mask.
    @inline(__always) func keepScale(_ b: Int, _ h: Int, _ i: Int, _ j: Int) -> Double {
        var z = seed &+ UInt64(truncatingIfNeeded: ((b * heads + h) * lq + i) * lk + j) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let u = Double(z >> 11) * 0x1.0p-53
        return u >= dropout ? 1 / (1 - dropout) : 0
    }
}

extension Kernels {
    /// Query and key rows per tile.
    static let attentionTile = 64

    /// The output `[B, H, Lq, Dv]` and each row's log-sum-exp `[B, H, Lq]` (−∞ for a row with no
    /// key left after masking; its output is 0) of contiguous float32/float64 `q [B, H, Lq, D]`,
    /// `k [B, Hkv, Lk, D]`, `v [B, Hkv, Lk, Dv]`.
    static func attentionForward(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ p: AttentionProblem) -> (Tensor, Tensor) {
        let out = Tensor(uninitializedShape: [p.batch, p.heads, p.lq, p.dv], dtype: q.dtype)
        let lse = Tensor(uninitializedShape: [p.batch, p.heads, p.lq], dtype: .float64)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (qp, kp, vp) = (q.elementPointer(T.self), k.elementPointer(T.self), v.elementPointer(T.self))
            nonisolated(unsafe) let (op, lp) = (out.elementPointer(T.self), lse.elementPointer(Double.self))
            nonisolated(unsafe) let mp = p.mask?.elementPointer(T.self)
            Parallel.forRanges(p.batch * p.kvHeads, costPerItem: p.group * p.lq * p.lk * (p.d + p.dv)) { items in
                let tile = attentionTile
                let scores = UnsafeMutablePointer<T>.allocate(capacity: tile * tile)
                let acc = UnsafeMutablePointer<T>.allocate(capacity: tile * p.dv)
                defer { scores.deallocate(); acc.deallocate() }
                var rowMax = [Double](repeating: 0, count: tile), rowSum = [Double](repeating: 0, count: tile)
                for item in items {
                    let b = item / p.kvHeads, kvh = item % p.kvHeads
                    let kBase = kp + (b * p.kvHeads + kvh) * p.lk * p.d, vBase = vp + (b * p.kvHeads + kvh) * p.lk * p.dv
                    for h in (kvh * p.group)..<((kvh + 1) * p.group) {
                        let qBase = qp + (b * p.heads + h) * p.lq * p.d, oBase = op + (b * p.heads + h) * p.lq * p.dv
                        for i0 in stride(from: 0, to: p.lq, by: tile) {
                            let br = Swift.min(tile, p.lq - i0)
                            for r in 0..<br { rowMax[r] = -.infinity; rowSum[r] = 0 }
                            acc.update(repeating: 0, count: br * p.dv)
                            let keyEnd = p.causal ? Swift.min(p.lk, i0 + br) : p.lk
                            for j0 in stride(from: 0, to: keyEnd, by: tile) {
                                let bc = Swift.min(tile, keyEnd - j0)
                                gemm(T.self, transA: false, transB: true, m: br, n: bc, k: p.d, a: qBase + i0 * p.d, lda: p.d,
                                     b: kBase + j0 * p.d, ldb: p.d, c: scores, ldc: bc, threads: 1)
                                for r in 0..<br {
                                    let i = i0 + r, row = scores + r * bc
                                    let maskRow = p.maskRow(b, h, i).map { mp! + $0 + j0 }
                                    var blockMax = -Double.infinity
                                    for c in 0..<bc {
                                        var s = row[c].doubleValue * p.scale
                                        if let maskRow { s += maskRow[c].doubleValue }
                                        if p.causal && j0 + c > i { s = -.infinity }
                                        row[c] = T(s)
                                        blockMax = Swift.max(blockMax, s)
                                    }
                                    let newMax = Swift.max(rowMax[r], blockMax)
                                    guard newMax > -.infinity else {
                                        for c in 0..<bc { row[c] = 0 }
                                        continue
                                    }
                                    let correction = rowMax[r] == -.infinity ? 0 : Foundation.exp(rowMax[r] - newMax)
                                    var sum = 0.0
                                    for c in 0..<bc {
                                        let e = Foundation.exp(row[c].doubleValue - newMax)
                                        sum += e
                                        row[c] = T(p.dropout > 0 ? e * p.keepScale(b, h, i, j0 + c) : e)
                                    }
                                    rowSum[r] = rowSum[r] * correction + sum
                                    rowMax[r] = newMax
                                    if correction != 1 {
                                        let a = acc + r * p.dv, t = T(correction)
                                        for x in 0..<p.dv { a[x] *= t }
                                    }
                                }
                                gemm(T.self, transA: false, transB: false, m: br, n: p.dv, k: bc, a: scores, lda: bc,
                                     b: vBase + j0 * p.dv, ldb: p.dv, c: acc, ldc: p.dv, beta: 1, threads: 1)
                            }
                            for r in 0..<br {
                                let i = i0 + r, o = oBase + i * p.dv, a = acc + r * p.dv
                                let inverse = rowSum[r] > 0 ? 1 / rowSum[r] : 0
                                for x in 0..<p.dv { o[x] = T(a[x].doubleValue * inverse) }
                                lp[(b * p.heads + h) * p.lq + i] = rowSum[r] > 0 ? rowMax[r] + Foundation.log(rowSum[r]) : -.infinity
                            }
                        }
                    }
                }
            }
        }
        withExtendedLifetime((q, k, v, p.mask)) { if q.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        return (out, lse)
    }

    /// dq, dk, dv of the attention whose forward pass gave `out` and `lse`, for the output
    /// gradient `gradOut` (contiguous, `out`'s shape and dtype).
    static func attentionBackward(_ q: Tensor, _ k: Tensor, _ v: Tensor, out: Tensor, lse: Tensor, gradOut: Tensor,
                                  _ p: AttentionProblem) -> (Tensor, Tensor, Tensor) {
        var dq = Tensor.zeros(q.shape, dtype: q.dtype), dk = Tensor.zeros(k.shape, dtype: k.dtype)
        var dv = Tensor.zeros(v.shape, dtype: v.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (qp, kp, vp) = (q.elementPointer(T.self), k.elementPointer(T.self), v.elementPointer(T.self))
            nonisolated(unsafe) let (op, gp, lp) = (out.elementPointer(T.self), gradOut.elementPointer(T.self), lse.elementPointer(Double.self))
            nonisolated(unsafe) let mp = p.mask?.elementPointer(T.self)
            dq.withUnsafeMutableElements(T.self) { dqBuffer in
                dk.withUnsafeMutableElements(T.self) { dkBuffer in
                    dv.withUnsafeMutableElements(T.self) { dvBuffer in
                        nonisolated(unsafe) let (dqp, dkp, dvp) = (dqBuffer.baseAddress!, dkBuffer.baseAddress!, dvBuffer.baseAddress!)
                        Parallel.forRanges(p.batch * p.kvHeads, costPerItem: 2 * p.group * p.lq * p.lk * (p.d + p.dv)) { items in
                            let tile = attentionTile
                            let probs = UnsafeMutablePointer<T>.allocate(capacity: tile * tile)
                            let dropped = UnsafeMutablePointer<T>.allocate(capacity: tile * tile)
                            let grads = UnsafeMutablePointer<T>.allocate(capacity: tile * tile)
                            defer { probs.deallocate(); dropped.deallocate(); grads.deallocate() }
                            var rowDot = [Double](repeating: 0, count: p.lq)
                            for item in items {
                                let b = item / p.kvHeads, kvh = item % p.kvHeads
                                let kOffset = (b * p.kvHeads + kvh) * p.lk
                                let (kBase, vBase) = (kp + kOffset * p.d, vp + kOffset * p.dv)
                                let (dkBase, dvBase) = (dkp + kOffset * p.d, dvp + kOffset * p.dv)
                                for h in (kvh * p.group)..<((kvh + 1) * p.group) {
                                    let qOffset = (b * p.heads + h) * p.lq
                                    let (qBase, dqBase) = (qp + qOffset * p.d, dqp + qOffset * p.d)
                                    let (oBase, gBase) = (op + qOffset * p.dv, gp + qOffset * p.dv)
                                    // D_i = Σ dO_i · O_i (the dropped weights' row sums of dP·P).
                                    for i in 0..<p.lq {
                                        var s = 0.0
                                        for x in 0..<p.dv { s += gBase[i * p.dv + x].doubleValue * oBase[i * p.dv + x].doubleValue }
                                        rowDot[i] = s
                                    }
                                    for i0 in stride(from: 0, to: p.lq, by: tile) {
                                        let br = Swift.min(tile, p.lq - i0)
                                        let keyEnd = p.causal ? Swift.min(p.lk, i0 + br) : p.lk
                                        for j0 in stride(from: 0, to: keyEnd, by: tile) {
                                            let bc = Swift.min(tile, keyEnd - j0)
                                            gemm(T.self, transA: false, transB: true, m: br, n: bc, k: p.d, a: qBase + i0 * p.d, lda: p.d,
                                                 b: kBase + j0 * p.d, ldb: p.d, c: probs, ldc: bc, threads: 1)
                                            for r in 0..<br {
                                                let i = i0 + r, row = probs + r * bc, drop = dropped + r * bc
                                                let maskRow = p.maskRow(b, h, i).map { mp! + $0 + j0 }
                                                let rowLSE = lp[qOffset + i]
                                                for c in 0..<bc {
                                                    var s = row[c].doubleValue * p.scale
                                                    if let maskRow { s += maskRow[c].doubleValue }
                                                    let masked = (p.causal && j0 + c > i) || rowLSE == -.infinity
                                                    let prob = masked ? 0 : Foundation.exp(s - rowLSE)
                                                    row[c] = T(prob)
                                                    drop[c] = T(p.dropout > 0 ? prob * p.keepScale(b, h, i, j0 + c) : prob)
                                                }
                                            }
                                            // dV_j += P̃ᵀ · dO_i
                                            gemm(T.self, transA: true, transB: false, m: bc, n: p.dv, k: br, a: dropped, lda: bc,
                                                 b: gBase + i0 * p.dv, ldb: p.dv, c: dvBase + j0 * p.dv, ldc: p.dv, beta: 1, threads: 1)
                                            // dP̃ = dO_i · V_jᵀ, then dS = P ∘ (dP − D_i) with dP = dP̃ · keep/(1 − p).
                                            gemm(T.self, transA: false, transB: true, m: br, n: bc, k: p.dv, a: gBase + i0 * p.dv, lda: p.dv,
                                                 b: vBase + j0 * p.dv, ldb: p.dv, c: grads, ldc: bc, threads: 1)
                                            for r in 0..<br {
                                                let i = i0 + r, row = probs + r * bc, g = grads + r * bc
                                                for c in 0..<bc {
                                                    var dp = g[c].doubleValue
                                                    if p.dropout > 0 { dp *= p.keepScale(b, h, i, j0 + c) }
                                                    g[c] = T(row[c].doubleValue * (dp - rowDot[i]) * p.scale)
                                                }
                                            }
                                            // dQ_i += dS · K_j, dK_j += dSᵀ · Q_i (the scale is in dS).
                                            gemm(T.self, transA: false, transB: false, m: br, n: p.d, k: bc, a: grads, lda: bc,
                                                 b: kBase + j0 * p.d, ldb: p.d, c: dqBase + i0 * p.d, ldc: p.d, beta: 1, threads: 1)
                                            gemm(T.self, transA: true, transB: false, m: bc, n: p.d, k: br, a: grads, lda: bc,
                                                 b: qBase + i0 * p.d, ldb: p.d, c: dkBase + j0 * p.d, ldc: p.d, beta: 1, threads: 1)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        withExtendedLifetime((q, k, v, out, lse, gradOut, p.mask)) { if q.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        return (dq, dk, dv)
    }
}
