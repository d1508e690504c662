/// Scaled dot-product attention, as `torch.nn.functional.scaled_dot_product_attention`.
extension Tensor {
    /// `softmax(q·kᵀ · scale + mask) · v`, with dropout on the weights, for `q [..., Hq, Lq, D]`,
    /// `k [..., Hkv, Lk, D]`, `v [..., Hkv, Lk, Dv]` → `[..., Hq, Lq, Dv]` (any number of leading
    /// batch dimensions, equal in all three; rank ≥ 3, a rank-2 `[L, D]` is one head).
    ///
    /// - Grouped-query and multi-query attention: `Hq` a multiple of `Hkv`; query head `h` uses
    ///   key/value head `h / (Hq / Hkv)` (PyTorch's `enable_gqa=True`).
    /// - `mask`: boolean (true takes part) or float (added to the scores), broadcastable to
    ///   `[..., Hq, Lq, Lk]`. `isCausal`: key `j` is seen by query `i` when `j ≤ i` (top-left
    ///   aligned, PyTorch's convention); not together with `mask`.
    /// - `dropout`: the probability of zeroing a weight (scaled by 1/(1 − p)); the mask is a hash
    ///   of `seed` and the position, so the same seed gives the same mask (and the backward pass
    ///   regenerates it). `scale`: default 1/√D.
    ///
    /// Runs tiled, FlashAttention-style (online softmax; the backward pass recomputes the weights
    /// from each row's log-sum-exp): memory grows with (Lq + Lk)·D, never Lq·Lk. A row whose keys
    /// are all masked out gives 0 (PyTorch's math backend gives NaN). float32 and float64; under
    /// autocast it runs on bfloat16 operands widened to float32 and returns bfloat16.
    public static func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, mask: Tensor? = nil, isCausal: Bool = false,
                                                 dropout: Double = 0, scale: Double? = nil, seed: UInt64 = 0) throws -> Tensor {
        try Dispatch.run(.scaledDotProductAttention, [q, k, v]) { operands in
            try attention(operands[0]!, operands[1]!, operands[2]!, mask: mask, isCausal: isCausal, dropout: dropout, scale: scale, seed: seed)
        }
    }

    private static func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, mask: Tensor?, isCausal: Bool,
                                  dropout: Double, scale: Double?, seed: UInt64) throws -> Tensor {
        let op = "scaledDotProductAttention"
        if q.dtype.isLowPrecision {
            return try attention(q.to(.float32), k.to(.float32), v.to(.float32), mask: mask, isCausal: isCausal,
                                 dropout: dropout, scale: scale, seed: seed).to(q.dtype)
        }
        try Kernels.requireFloat(q, op)
        guard k.dtype == q.dtype, v.dtype == q.dtype else {
            throw TensorError.dtypeMismatch(op: op, message: "q is \(q.dtype), k \(k.dtype), v \(v.dtype); all must match")
        }
        guard q.rank >= 2, k.rank == q.rank, v.rank == q.rank else {
            throw TensorError.shapeMismatch(op: op, message: "q \(q.shape), k \(k.shape), v \(v.shape) must have one rank ≥ 2")
        }
        if q.rank == 2 {
            let out = try attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), mask: mask, isCausal: isCausal,
                                    dropout: dropout, scale: scale, seed: seed)
            return try out.squeeze(0)
        }
        let r = q.rank
        let lead = Array(q.shape.prefix(r - 3))
        guard Array(k.shape.prefix(r - 3)) == lead, Array(v.shape.prefix(r - 3)) == lead else {
            throw TensorError.shapeMismatch(op: op, message: "batch dimensions differ: q \(q.shape), k \(k.shape), v \(v.shape)")
        }
        let (hq, lq, d) = (q.shape[r - 3], q.shape[r - 2], q.shape[r - 1])
        let (hkv, lk, dv) = (k.shape[r - 3], k.shape[r - 2], v.shape[r - 1])
        guard k.shape[r - 1] == d, v.shape[r - 3] == hkv, v.shape[r - 2] == lk else {
            throw TensorError.shapeMismatch(op: op, message: "k \(k.shape) and v \(v.shape) do not fit q \(q.shape) (k needs [..., Hkv, Lk, \(d)], v [..., Hkv, Lk, Dv])")
        }
        guard hkv >= 1, hq % hkv == 0 else {
            throw TensorError.shapeMismatch(op: op, message: "\(hq) query heads cannot share \(hkv) key/value heads (Hq must be a multiple of Hkv)")
        }
        guard dropout >= 0, dropout < 1 else { throw TensorError.invalidArgument(op: op, message: "dropout must be in [0, 1), got \(dropout)") }
        if isCausal && mask != nil { throw TensorError.invalidArgument(op: op, message: "give a mask or isCausal, not both") }
        let batch = Shape.count(lead)
        let additive = try mask.map { try attentionMask($0, batch: lead, heads: hq, lq: lq, lk: lk, dtype: q.dtype) }
        let problem = AttentionProblem(batch: batch, heads: hq, kvHeads: hkv, lq: lq, lk: lk, d: d, dv: dv,
                                       scale: scale ?? 1 / Double(d).squareRoot(), causal: isCausal, mask: additive,
                                       dropout: dropout, seed: seed)
        let (qc, kc, vc) = (q.contiguousStorage().detach(), k.contiguousStorage().detach(), v.contiguousStorage().detach())
        let (out, lse) = Kernels.attentionForward(qc, kc, vc, problem)
        let shaped = try out.reshape(lead + [hq, lq, dv])
        return Dispatch.record(.scaledDotProductAttention, shaped, inputs: [q, k, v],
                               state: AttentionState(q: qc, k: kc, v: vc, out: out, lse: lse, problem: problem))
    }

    /// `mask` as a contiguous additive `[mb, mh, Lq, Lk]` float mask (mb 1 or the batch, mh 1 or
    /// the heads): boolean false becomes −∞.
    private static func attentionMask(_ mask: Tensor, batch lead: [Int], heads: Int, lq: Int, lk: Int, dtype: DType) throws -> Tensor {
        let op = "scaledDotProductAttention"
        let full = lead + [heads, lq, lk]
        guard mask.rank <= full.count, (try? Shape.broadcast(mask.shape, full, op: op)) == full else {
            throw TensorError.shapeMismatch(op: op, message: "mask \(mask.shape) does not broadcast to \(full)")
        }
        var m = mask.detach()
        while m.rank < full.count { m = try m.unsqueeze(0) }
        let r = m.rank
        let leadBroadcast = m.shape.prefix(r - 3).allSatisfy { $0 == 1 }
        let mb = leadBroadcast ? 1 : Shape.count(lead), mh = m.shape[r - 3]
        var expanded = try m.expand((leadBroadcast ? m.shape.prefix(r - 3).map { _ in 1 } : lead) + [mh, lq, lk])
        expanded = try expanded.contiguous().reshape([mb, mh, lq, lk])
        if expanded.dtype == .bool {
            return try Tensor.where(expanded, Tensor.zeros([], dtype: dtype), Tensor.full([], -.infinity, dtype: dtype))
        }
        return expanded.to(dtype).contiguous()
    }
}

/// What attention keeps for its gradient: the contiguous operands, the output and each row's
/// log-sum-exp.
struct AttentionState: @unchecked Sendable {
    let q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor
    let problem: AttentionProblem
}
