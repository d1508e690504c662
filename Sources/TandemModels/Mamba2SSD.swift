import TandemNN

// Mamba-2's state-space duality (SSD): the selective state-space recurrence
//
//     h_t = exp(a_t) · h_(t-1) + x_t ⊗ b_t          (state [p, n] per batch and head)
//     y_t[p] = Σ_n h_t[p, n] · c_t[n]
//
// computed chunk by chunk as matrix products (Dao & Gu, "Transformers are SSMs", 2024;
// state-spaces/mamba `ssd_minimal.py`). Everything is built from differentiable tensor ops,
// so autograd flows through all of it; the matmul-shaped work runs on GEMM.

/// Segment sums, computed the stable way (a masked cumulative sum rather than a difference
/// of cumulative sums): `x [..., T]` → `[..., T, T]` with
/// `out[..., i, j] = Σ_{j < k ≤ i} x[..., k]` for `i ≥ j` (0 on the diagonal) and `-∞` for `j > i`.
/// `exp(segsum(a))` is the matrix of decays from step j to step i of a recurrence with log-decays `a`.
/// Gradients flow to `x` (none through the `-∞` entries).
public func segsum(_ x: Tensor) throws -> Tensor {
    guard x.rank >= 1, x.dtype.isComputeType else {
        throw TensorError.invalidArgument(op: "segsum", message: "needs a float32/float64 tensor [..., T], got \(x.shape) \(x.dtype)")
    }
    let t = x.shape[x.rank - 1]
    let expanded = try x.unsqueeze(-1).expand(x.shape + [t])     // [..., T(i), T(j)] = x[..., i]
    let strictlyLower = lowerTriangleMask(t, diagonal: -1)
    let summed = try Tensor.where(strictlyLower, expanded, Tensor.scalar(0, dtype: x.dtype)).cumsum(axis: -2)
    return try Tensor.where(lowerTriangleMask(t, diagonal: 0), summed, Tensor.scalar(-.infinity, dtype: x.dtype))
}

/// A bool `[t, t]` mask, true where `j − i ≤ diagonal`.
func lowerTriangleMask(_ t: Int, diagonal: Int) -> Tensor {
    var mask = [Double](repeating: 0, count: t * t)
    for i in 0..<t { for j in 0..<t where j - i <= diagonal { mask[i * t + j] = 1 } }
    return Tensor(mask, shape: [t, t], dtype: .bool)
}

/// Checks the SSD operand shapes and returns (batch, length, heads, headdim, dState).
private func ssdDimensions(_ op: String, x: Tensor, a: Tensor, b: Tensor, c: Tensor,
                           initialStates: Tensor?) throws -> (Int, Int, Int, Int, Int) {
    guard x.rank == 4, a.rank == 3, b.rank == 4, c.rank == 4 else {
        throw TensorError.shapeMismatch(op: op, message: "expects x [b, l, h, p], a [b, l, h], b and c [b, l, h, n]; got \(x.shape), \(a.shape), \(b.shape), \(c.shape)")
    }
    let (bs, l, h, p, n) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], b.shape[3])
    guard a.shape == [bs, l, h], b.shape == [bs, l, h, n], c.shape == b.shape else {
        throw TensorError.shapeMismatch(op: op, message: "x \(x.shape) needs a [\(bs), \(l), \(h)], b and c [\(bs), \(l), \(h), n]; got \(a.shape), \(b.shape), \(c.shape)")
    }
    guard x.dtype.isComputeType, [a, b, c].allSatisfy({ $0.dtype == x.dtype }) else {
        throw TensorError.dtypeMismatch(op: op, message: "x, a, b, c must share one float dtype; got \(x.dtype), \(a.dtype), \(b.dtype), \(c.dtype)")
    }
    if let s = initialStates {
        guard s.shape == [bs, h, p, n], s.dtype == x.dtype else {
            throw TensorError.shapeMismatch(op: op, message: "initialStates must be [\(bs), \(h), \(p), \(n)] \(x.dtype), got \(s.shape) \(s.dtype)")
        }
    }
    return (bs, l, h, p, n)
}

/// The chunked SSD algorithm of Mamba-2 (`ssd_minimal_discrete`).
///
/// Computes the recurrence `h_t = exp(a_t)·h_(t−1) + x_t ⊗ b_t`, `y_t = h_t · c_t` (per batch
/// and head, `h_0 = initialStates` or zero) in chunks of `blockLength` steps:
/// 1. intra-chunk outputs: `(C Bᵀ ∘ exp(segsum(a))) X` per chunk (masked batched matmul);
/// 2. each chunk's final state from its own inputs, `(X ∘ decay)ᵀ B`;
/// 3. the inter-chunk recurrence, `exp(segsum(chunk log-decays)) · states` (a small matmul);
/// 4. state-to-output, `C · stateᵀ ∘ exp(cumsum(a))`.
/// A length that is not a multiple of `blockLength` is zero-padded (a = 0, x = 0 leaves the
/// state unchanged) and the output sliced back. Gradients flow to x, a, b, c and initialStates.
///
/// - Parameters:
///   - x: `[batch, length, heads, headdim]` inputs (in a Mamba-2 block, `x · dt`).
///   - a: `[batch, length, heads]` log-decays (in a block, `A · dt`, negative).
///   - b: `[batch, length, heads, dState]` input projections.
///   - c: `[batch, length, heads, dState]` output projections.
///   - blockLength: chunk length Q ≥ 1.
///   - initialStates: optional `[batch, heads, headdim, dState]`.
/// - Returns: `y [batch, length, heads, headdim]` and `finalState [batch, heads, headdim, dState]`.
/// - Throws: `TensorError` for mismatched shapes or dtypes, or `blockLength < 1`.
public func ssd(x: Tensor, a: Tensor, b: Tensor, c: Tensor, blockLength: Int,
                initialStates: Tensor? = nil) throws -> (y: Tensor, finalState: Tensor) {
    let (bs, l, h, p, n) = try ssdDimensions("ssd", x: x, a: a, b: b, c: c, initialStates: initialStates)
    guard blockLength >= 1 else {
        throw TensorError.invalidArgument(op: "ssd", message: "blockLength must be at least 1, got \(blockLength)")
    }
    let q = blockLength
    let chunks = Swift.max(1, (l + q - 1) / q)
    let padding = chunks * q - l
    // Zero-pad the time axis (axis 1) to a multiple of the chunk length.
    func padded(_ t: Tensor) throws -> Tensor {
        padding == 0 ? t : try t.pad([Int](repeating: 0, count: 2 * (t.rank - 2)) + [0, padding])
    }
    // [b, l, h, ...] → [b, h, chunk, Q, ...] (views; GEMM reads them through strides).
    let x5 = try padded(x).reshape([bs, chunks, q, h, p]).permute([0, 3, 1, 2, 4])
    let b5 = try padded(b).reshape([bs, chunks, q, h, n]).permute([0, 3, 1, 2, 4])
    let c5 = try padded(c).reshape([bs, chunks, q, h, n]).permute([0, 3, 1, 2, 4])
    let a4 = try padded(a).reshape([bs, chunks, q, h]).permute([0, 3, 1, 2])       // [b, h, c, Q]
    let aCumsum = try a4.cumsum(axis: -1)                                            // [b, h, c, Q]

    // 1. Diagonal blocks: Y_diag[l] = Σ_s (c_l · b_s) exp(segsum)[l, s] x_s.
    let decayWithin = try segsum(a4).exp()                                           // [b, h, c, Q, Q]
    let scores = try Tensor.matmul(c5, b5.transpose(-1, -2)) * decayWithin          // [b, h, c, Q, Q]
    let yDiag = try Tensor.matmul(scores, x5)                                        // [b, h, c, Q, p]

    // 2. The state each chunk reaches from its own inputs: Σ_l decay_l · x_l ⊗ b_l.
    let aLast = try aCumsum.slice(axis: -1, start: q - 1)                            // [b, h, c, 1]
    let decayToEnd = try (aLast - aCumsum).exp()                                     // [b, h, c, Q]
    let chunkStates = try Tensor.matmul((x5 * decayToEnd.unsqueeze(-1)).transpose(-1, -2), b5) // [b, h, c, p, n]

    // 3. Inter-chunk recurrence over the chunk boundaries (including the initial state).
    let start = try initialStates.map { try $0.unsqueeze(2) } ?? Tensor.zeros([bs, h, 1, p, n], dtype: x.dtype)
    let states = try Tensor.cat([start, chunkStates], axis: 2)                       // [b, h, c+1, p, n]
    let decayChunks = try segsum(aLast.squeeze(-1).pad([1, 0])).exp()                // [b, h, c+1, c+1]
    let newStates = try Tensor.matmul(decayChunks, states.reshape([bs, h, chunks + 1, p * n]))
        .reshape([bs, h, chunks + 1, p, n])
    let entering = try newStates.slice(axis: 2, start: 0, end: chunks)               // [b, h, c, p, n]
    let finalState = try newStates.slice(axis: 2, start: chunks).squeeze(2)          // [b, h, p, n]

    // 4. State to output: Y_off[l] = exp(cumsum a)_l · (state · c_l).
    let yOff = try Tensor.matmul(c5, entering.transpose(-1, -2)) * aCumsum.exp().unsqueeze(-1) // [b, h, c, Q, p]

    var y = try (yDiag + yOff).permute([0, 2, 3, 1, 4]).reshape([bs, chunks * q, h, p])
    if padding > 0 { y = try y.slice(axis: 1, start: 0, end: l) }
    return (y, finalState)
}

/// One step of the SSM recurrence: `state' = exp(a)·state + x ⊗ b`, `y = state' · c`.
///
/// - Parameters:
///   - state: `[batch, heads, headdim, dState]`.
///   - x: `[batch, heads, headdim]`; a: `[batch, heads]`; b, c: `[batch, heads, dState]`.
/// - Returns: `y [batch, heads, headdim]` and the new state `[batch, heads, headdim, dState]`.
///   Differentiable in all inputs.
public func ssdStep(state: Tensor, x: Tensor, a: Tensor, b: Tensor, c: Tensor) throws -> (y: Tensor, state: Tensor) {
    guard state.rank == 4, x.shape == Array(state.shape.prefix(3)), a.shape == Array(state.shape.prefix(2)),
          b.shape == [state.shape[0], state.shape[1], state.shape[3]], c.shape == b.shape else {
        throw TensorError.shapeMismatch(op: "ssdStep", message: "expects state [b, h, p, n], x [b, h, p], a [b, h], b and c [b, h, n]; got \(state.shape), \(x.shape), \(a.shape), \(b.shape), \(c.shape)")
    }
    let next = try state * a.exp().unsqueeze(-1).unsqueeze(-1) + x.unsqueeze(-1) * b.unsqueeze(-2)
    let y = try Tensor.matmul(next, c.unsqueeze(-1)).squeeze(-1)
    return (y, next)
}

/// The reference sequential scan of the same recurrence as `ssd`, one time step at a time
/// (for tests; slow for long sequences). Same shapes and semantics as `ssd`; differentiable.
///
/// - Returns: `y [batch, length, heads, headdim]`, `finalState [batch, heads, headdim, dState]`.
public func ssdSequential(x: Tensor, a: Tensor, b: Tensor, c: Tensor,
                          initialStates: Tensor? = nil) throws -> (y: Tensor, finalState: Tensor) {
    let (bs, l, h, p, n) = try ssdDimensions("ssdSequential", x: x, a: a, b: b, c: c, initialStates: initialStates)
    var state = initialStates ?? Tensor.zeros([bs, h, p, n], dtype: x.dtype)
    var ys: [Tensor] = []
    for t in 0..<l {
        func at(_ v: Tensor) throws -> Tensor { try v.slice(axis: 1, start: t, end: t + 1).squeeze(1) }
        let step = try ssdStep(state: state, x: at(x), a: at(a), b: at(b), c: at(c))
        ys.append(step.y)
        state = step.state
    }
    let y = ys.isEmpty ? Tensor.zeros([bs, 0, h, p], dtype: x.dtype) : try Tensor.stack(ys, axis: 1)
    return (y, state)
}
