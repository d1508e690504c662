import Foundation

/// Scaled dot-product attention, tiled as FlashAttention (Dao et al. 2022, and its v2 loop
/// order): for each block of query rows the key/value blocks stream through an online softmax
/// (running maximum, running sum, rescaled accumulator), so no `[Lq, Lk]` matrix is ever held;
/// the forward pass keeps only each row's log-sum-exp, and the backward pass recomputes the
/// probabilities block by block. Tile products run on OpenBLAS (one thread each); the work is
/// split over (batch, key/value head) items, so grouped-query heads that share a key/value head
/// accumulate its gradients on one thread without races. Memory: O((Lq + Lk)·d) per item plus
/// three `[64, 256]` tiles (query rows × key rows).

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

extension AttentionProblem {
    /// How many of the `count` keys from `j0` query row `i` sees: all, or under the causal mask
    /// those up to its own position.
    @inline(__always) func visibleKeys(row i: Int, from j0: Int, count: Int) -> Int {
        causal ? Swift.max(0, Swift.min(count, i - j0 + 1)) : count
    }

    /// The FLOPs of the tile products: per pair of a query block and a key block it visits,
    /// `products` GEMMs of br·bc·`width` multiply-adds (causal attention skips key blocks after
    /// the query block).
    func tileFlops(widthPerPair: Int) -> Int {
        var pairs = 0
        for i0 in stride(from: 0, to: lq, by: Kernels.attentionQueryTile) {
            let br = Swift.min(Kernels.attentionQueryTile, lq - i0)
            let keyEnd = causal ? Swift.min(lk, i0 + br) : lk
            for j0 in stride(from: 0, to: keyEnd, by: Kernels.attentionKeyTile) { pairs += br * Swift.min(Kernels.attentionKeyTile, keyEnd - j0) }
        }
        return 2 * batch * heads * pairs * widthPerPair
    }
}

extension Kernels {
    /// Query rows per tile.
    static let attentionQueryTile = 64
    /// Key rows per tile.
    static let attentionKeyTile = 256

    /// The output `[B, H, Lq, Dv]` and each row's log-sum-exp `[B, H, Lq]` (−∞ for a row with no
    /// key left after masking; its output is 0) of contiguous float32/float64 `q [B, H, Lq, D]`,
    /// `k [B, Hkv, Lk, D]`, `v [B, Hkv, Lk, Dv]`.
    static func attentionForward(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ p: AttentionProblem) -> (Tensor, Tensor) {
        FlopCounter.add(p.tileFlops(widthPerPair: p.d + p.dv))
        let out = Tensor(uninitializedShape: [p.batch, p.heads, p.lq, p.dv], dtype: q.dtype)
        let lse = Tensor(uninitializedShape: [p.batch, p.heads, p.lq], dtype: .float64)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (qp, kp, vp) = (q.elementPointer(T.self), k.elementPointer(T.self), v.elementPointer(T.self))
            nonisolated(unsafe) let (op, lp) = (out.elementPointer(T.self), lse.elementPointer(Double.self))
            nonisolated(unsafe) let mp = p.mask?.elementPointer(T.self)
            let scale = T(p.scale)
            Parallel.forRanges(p.batch * p.kvHeads, costPerItem: p.group * p.lq * p.lk * (p.d + p.dv)) { items in
                let (tile, keyTile) = (attentionQueryTile, attentionKeyTile)
                let scores = UnsafeMutablePointer<T>.allocate(capacity: tile * keyTile)
                let acc = UnsafeMutablePointer<T>.allocate(capacity: tile * p.dv)
                defer { scores.deallocate(); acc.deallocate() }
                var rowMax = [Double](repeating: 0, count: tile), rowSum = [Double](repeating: 0, count: tile)
                var correction = [Double](repeating: 0, count: tile), validCount = [Int](repeating: 0, count: tile)
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
                            for j0 in stride(from: 0, to: keyEnd, by: keyTile) {
                                let bc = Swift.min(keyTile, keyEnd - j0)
                                gemm(T.self, transA: false, transB: true, m: br, n: bc, k: p.d, a: qBase + i0 * p.d, lda: p.d,
                                     b: kBase + j0 * p.d, ldb: p.d, c: scores, ldc: bc, threads: 1)
                                // Scale and mask each row and shift it by its new running maximum (keys past
                                // the query under the causal mask become −∞), exponentiate the tile at once,
                                // then fold each row's sum into the running sum and rescale its accumulator.
                                for r in 0..<br {
                                    let i = i0 + r, row = scores + r * bc
                                    let valid = p.visibleKeys(row: i, from: j0, count: bc)
                                    let blockMax = scaleScores(row, count: valid, scale: scale, mask: p.maskRow(b, h, i).map { mp! + $0 + j0 })
                                    let newMax = Swift.max(rowMax[r], blockMax.doubleValue)
                                    validCount[r] = newMax > -.infinity ? valid : 0
                                    correction[r] = rowMax[r] == -.infinity ? 0 : Foundation.exp(rowMax[r] - newMax)
                                    if newMax > -.infinity { rowMax[r] = newMax }
                                    shiftScores(row, count: validCount[r], width: bc, by: T(rowMax[r]))
                                }
                                exponentiateTile(scores, count: br * bc, capacity: tile * keyTile)
                                for r in 0..<br where validCount[r] > 0 {
                                    let i = i0 + r, row = scores + r * bc
                                    // The sum is of all weights; the accumulator takes the dropped ones.
                                    rowSum[r] = rowSum[r] * correction[r] + sumOf(row, count: validCount[r])
                                    if p.dropout > 0 { for c in 0..<validCount[r] { row[c] *= T(p.keepScale(b, h, i, j0 + c)) } }
                                    if correction[r] != 1 {
                                        let a = acc + r * p.dv, t = T(correction[r])
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
        // Scores again (d), dV (dv), dP (dv), dQ (d), dK (d).
        FlopCounter.add(p.tileFlops(widthPerPair: 3 * p.d + 2 * p.dv))
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
                        let scale = T(p.scale)
                        Parallel.forRanges(p.batch * p.kvHeads, costPerItem: 2 * p.group * p.lq * p.lk * (p.d + p.dv)) { items in
                            let (tile, keyTile) = (attentionQueryTile, attentionKeyTile)
                            let probs = UnsafeMutablePointer<T>.allocate(capacity: tile * keyTile)
                            let dropped = UnsafeMutablePointer<T>.allocate(capacity: tile * keyTile)
                            let grads = UnsafeMutablePointer<T>.allocate(capacity: tile * keyTile)
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
                                        for j0 in stride(from: 0, to: keyEnd, by: keyTile) {
                                            let bc = Swift.min(keyTile, keyEnd - j0)
                                            gemm(T.self, transA: false, transB: true, m: br, n: bc, k: p.d, a: qBase + i0 * p.d, lda: p.d,
                                                 b: kBase + j0 * p.d, ldb: p.d, c: probs, ldc: bc, threads: 1)
                                            for r in 0..<br {
                                                let i = i0 + r, row = probs + r * bc
                                                let rowLSE = lp[qOffset + i]
                                                let valid = rowLSE == -.infinity ? 0 : p.visibleKeys(row: i, from: j0, count: bc)
                                                _ = scaleScores(row, count: valid, scale: scale, mask: p.maskRow(b, h, i).map { mp! + $0 + j0 })
                                                shiftScores(row, count: valid, width: bc, by: valid > 0 ? T(rowLSE) : 0)
                                            }
                                            exponentiateTile(probs, count: br * bc, capacity: tile * keyTile)
                                            if p.dropout > 0 {
                                                for r in 0..<br {
                                                    let i = i0 + r, row = probs + r * bc, drop = dropped + r * bc
                                                    for c in 0..<bc { drop[c] = row[c] * T(p.keepScale(b, h, i, j0 + c)) }
                                                }
                                            } else {
                                                dropped.update(from: probs, count: br * bc)
                                            }
                                            // dV_j += P̃ᵀ · dO_i
                                            gemm(T.self, transA: true, transB: false, m: bc, n: p.dv, k: br, a: dropped, lda: bc,
                                                 b: gBase + i0 * p.dv, ldb: p.dv, c: dvBase + j0 * p.dv, ldc: p.dv, beta: 1, threads: 1)
                                            // dP̃ = dO_i · V_jᵀ, then dS = P ∘ (dP − D_i) with dP = dP̃ · keep/(1 − p).
                                            gemm(T.self, transA: false, transB: true, m: br, n: bc, k: p.dv, a: gBase + i0 * p.dv, lda: p.dv,
                                                 b: vBase + j0 * p.dv, ldb: p.dv, c: grads, ldc: bc, threads: 1)
                                            for r in 0..<br {
                                                let i = i0 + r, row = probs + r * bc, g = grads + r * bc
                                                if p.dropout > 0 { for c in 0..<bc { g[c] *= T(p.keepScale(b, h, i, j0 + c)) } }
                                                let dot = T(rowDot[i])
                                                for c in 0..<bc { g[c] = row[c] * (g[c] - dot) * scale }
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

extension Kernels {
    /// Scales the first `count` scores of a row in place and adds the mask's row; returns their
    /// maximum (−∞ for none). Float rows run eight lanes at a time.
    @inline(__always)
    static func scaleScores<T: FloatElement>(_ row: UnsafeMutablePointer<T>, count: Int, scale: T, mask: UnsafeMutablePointer<T>?) -> T {
        var c = 0
        var best = -T.infinity
        if T.self == Float.self, count >= 8 {
            let r = UnsafeMutableRawPointer(row), m = mask.map { UnsafeRawPointer($0) }
            let s = SIMD8<Float>(repeating: scale as! Float)
            var lanes = SIMD8<Float>(repeating: -.infinity)
            while c + 8 <= count {
                var v = r.loadUnaligned(fromByteOffset: c * 4, as: SIMD8<Float>.self) * s
                if let m { v += m.loadUnaligned(fromByteOffset: c * 4, as: SIMD8<Float>.self) }
                r.storeBytes(of: v, toByteOffset: c * 4, as: SIMD8<Float>.self)
                lanes.replace(with: v, where: v .> lanes)
                c += 8
            }
            best = lanes.max() as! T
        }
        while c < count {
            let v = row[c] * scale + (mask?[c] ?? 0)
            row[c] = v
            best = Swift.max(best, v)
            c += 1
        }
        return best
    }

    /// Subtracts `shift` from the first `count` scores and sets the rest of the `width` to −∞.
    @inline(__always)
    static func shiftScores<T: FloatElement>(_ row: UnsafeMutablePointer<T>, count: Int, width: Int, by shift: T) {
        for c in 0..<count { row[c] -= shift }
        (row + count).update(repeating: -.infinity, count: width - count)
    }

    /// e^x over the first `count` values of a tile buffer of `capacity` in place: for float32 one
    /// single-threaded oneDNN call (its JIT kernel runs at the CPU's full vector width; the Swift
    /// loop at baseline SSE is 4 lanes wide) over `count` rounded up to a multiple of 4096 (few
    /// sizes, so few cached primitives; the values past `count` are scratch), else Swift.
    @inline(__always)
    static func exponentiateTile<T: FloatElement>(_ tile: UnsafeMutablePointer<T>, count: Int, capacity: Int) {
        let block = DNNLEltwise.minimumElements
        let rounded = Swift.min(capacity, (count + block - 1) / block * block)
        if T.self == Float.self, rounded >= block, DNNLEltwise.expInPlace(UnsafeMutableRawPointer(tile), count: rounded) {
            return
        }
        if T.self == Float.self {
            let r = UnsafeMutableRawPointer(tile)
            var c = 0
            while c + 8 <= count {
                r.storeBytes(of: FastMath.exp8(r.loadUnaligned(fromByteOffset: c * 4, as: SIMD8<Float>.self)), toByteOffset: c * 4,
                             as: SIMD8<Float>.self)
                c += 8
            }
            while c < count { tile[c] = T.exp(tile[c]); c += 1 }
            return
        }
        for c in 0..<count { tile[c] = T.exp(tile[c]) }
    }

    /// The sum of the first `count` values, in float32 lanes for float32 rows (a tile row is short).
    @inline(__always)
    static func sumOf<T: FloatElement>(_ row: UnsafeMutablePointer<T>, count: Int) -> Double {
        var c = 0, sum = 0.0
        if T.self == Float.self {
            let r = UnsafeRawPointer(row)
            var lanes = SIMD8<Float>.zero
            while c + 8 <= count {
                lanes += r.loadUnaligned(fromByteOffset: c * 4, as: SIMD8<Float>.self)
                c += 8
            }
            sum = Double(lanes.sum())
        }
        while c < count { sum += row[c].doubleValue; c += 1 }
        return sum
    }
}
