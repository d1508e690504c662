/// CTC forward–backward in log space over time-major `[T, N, C]` log-probabilities, one
/// sample per task. States follow the extended target l' = (blank, l1, blank, l2, ..., blank)
/// of length S' = 2·L + 1; as in PyTorch, α_t(s) and β_t(s) both include the emission
/// lp[t, l'(s)].
extension Kernels {
    /// The flattened targets of a CTC batch and the per-sample lengths, all validated.
    struct CTCBatch {
        /// Labels of all samples back to back; sample n starts at `offsets[n]`.
        let labels: [Int]
        let offsets: [Int]
        let inputLengths: [Int]
        let targetLengths: [Int]
        let time: Int, batch: Int, classes: Int, blank: Int
        /// The widest S' in the batch plus 2 padding slots on each side of a row.
        var rowStride: Int { 2 * (targetLengths.max() ?? 0) + 1 + 4 }
    }

    /// The log-likelihood lattice's padding: each row holds S' states at offset 2, with
    /// -inf in the 2 slots before and after, so that s-1, s-2, s+1, s+2 need no bounds checks.
    static let ctcPad = 2

    /// Writes the extended labels l' of sample n and the additive skip mask (0 where the
    /// transition s-2 → s is allowed, -inf elsewhere) into `ext` and `skip` (S' entries each).
    @inline(__always)
    static func ctcExtendedLabels<T: FloatElement>(_ batch: CTCBatch, sample n: Int, ext: UnsafeMutablePointer<Int>,
                                                   skip: UnsafeMutablePointer<T>) -> Int {
        let length = batch.targetLengths[n], offset = batch.offsets[n]
        let states = 2 * length + 1
        for s in 0..<states {
            if s % 2 == 0 {
                ext[s] = batch.blank
                skip[s] = -T.infinity
            } else {
                let label = batch.labels[offset + s / 2]
                ext[s] = label
                skip[s] = s >= 3 && batch.labels[offset + s / 2 - 1] != label ? 0 : -T.infinity
            }
        }
        // Past the last state: no transitions (read by the backward recursion at s + 2).
        skip[states] = -T.infinity
        skip[states + 1] = -T.infinity
        return states
    }

    /// log(e^a + e^b + e^c), -inf when all three are -inf.
    @inline(__always)
    static func logSumExp3<T: FloatElement>(_ a: T, _ b: T, _ c: T) -> T {
        let m = Swift.max(a, Swift.max(b, c))
        if m == -T.infinity { return m }
        return m + T.log(T.exp(a - m) + T.exp(b - m) + T.exp(c - m))
    }

    /// The CTC forward pass: per-sample negative log-likelihoods `nll[n]` (+inf for impossible
    /// alignments; 0 for an empty target with no frames), and the α lattice in `alpha`
    /// (`[N, alphaRows, rowStride]`; with `alphaRows == T` every row is kept for the backward
    /// pass, with 2 only a rolling pair). States that cannot lie on a complete path are -inf.
    static func ctcForward<T: FloatElement>(_ logProbs: UnsafePointer<T>, _ batch: CTCBatch,
                                            alpha: UnsafeMutablePointer<T>, alphaRows: Int,
                                            nll: UnsafeMutablePointer<T>) {
        nonisolated(unsafe) let (lp, ap, np) = (logProbs, alpha, nll)
        let rowStride = batch.rowStride, c = batch.classes, nc = batch.batch * c
        let cost = batch.time * rowStride * 12
        Parallel.forRanges(batch.batch, costPerItem: cost) { range in
            let ext = UnsafeMutablePointer<Int>.allocate(capacity: rowStride)
            let skip = UnsafeMutablePointer<T>.allocate(capacity: rowStride)
            defer { ext.deallocate(); skip.deallocate() }
            for n in range {
                let states = ctcExtendedLabels(batch, sample: n, ext: ext, skip: skip)
                let frames = batch.inputLengths[n]
                if frames == 0 {
                    np[n] = batch.targetLengths[n] == 0 ? 0 : T.infinity
                    continue
                }
                let lattice = ap + n * alphaRows * rowStride
                func row(_ t: Int) -> UnsafeMutablePointer<T> { lattice + (t % alphaRows) * rowStride + ctcPad }
                // t = 0: only the leading blank and the first label.
                let first = row(0), lp0 = lp + n * c
                (first - ctcPad).update(repeating: -T.infinity, count: rowStride)
                first[0] = lp0[batch.blank]
                if states > 1 { first[1] = lp0[ext[1]] }
                for t in 1..<frames {
                    let prev = row(t - 1), cur = row(t), lpt = lp + t * nc + n * c
                    // Reachable from the start: s <= 2t+1; able to reach the end: s >= S' - 2(frames - t).
                    let lo = Swift.max(0, states - 2 * (frames - t)), hi = Swift.min(states, 2 * t + 2)
                    (cur - ctcPad).update(repeating: -T.infinity, count: rowStride)
                    var s = lo
                    while s < hi {
                        cur[s] = logSumExp3(prev[s], prev[s - 1], prev[s - 2] + skip[s]) + lpt[ext[s]]
                        s += 1
                    }
                }
                let last = row(frames - 1)
                let logLikelihood = states == 1 ? last[0] : logSumExp3(last[states - 1], last[states - 2], -T.infinity)
                np[n] = -logLikelihood
            }
        }
    }

    /// The CTC gradient with respect to the log-probabilities, PyTorch's formula
    /// `grad[t, n, c] = scale[n] · (exp(lp[t, n, c]) - Σ_{s: l'(s) = c} exp(α_t(s) + β_t(s) + nll[n] - lp[t, n, c]))`
    /// for t below the input length, 0 after it. A sample with an infinite nll gets 0 with
    /// `zeroInfinity`, NaN (as in PyTorch) otherwise. `alpha` is the full lattice from
    /// `ctcForward`; `grad` is `[T, N, C]` contiguous.
    static func ctcBackward<T: FloatElement>(_ logProbs: UnsafePointer<T>, _ batch: CTCBatch, alpha: UnsafePointer<T>,
                                             nll: UnsafePointer<T>, scale: UnsafePointer<Double>, zeroInfinity: Bool,
                                             grad: UnsafeMutablePointer<T>) {
        nonisolated(unsafe) let (lp, ap, np, sp, gp) = (logProbs, alpha, nll, scale, grad)
        let rowStride = batch.rowStride, c = batch.classes, nc = batch.batch * c, time = batch.time
        let cost = time * rowStride * 12
        Parallel.forRanges(batch.batch, costPerItem: cost) { range in
            let ext = UnsafeMutablePointer<Int>.allocate(capacity: rowStride)
            let skip = UnsafeMutablePointer<T>.allocate(capacity: rowStride)
            let betaRows = UnsafeMutablePointer<T>.allocate(capacity: 2 * rowStride)
            defer { ext.deallocate(); skip.deallocate(); betaRows.deallocate() }
            for n in range {
                let states = ctcExtendedLabels(batch, sample: n, ext: ext, skip: skip)
                let frames = batch.inputLengths[n]
                let loss = np[n]
                for t in frames..<time { (gp + t * nc + n * c).update(repeating: 0, count: c) }
                if loss == T.infinity {
                    let fill: T = zeroInfinity ? 0 : .nan
                    for t in 0..<frames { (gp + t * nc + n * c).update(repeating: fill, count: c) }
                    continue
                }
                let g = T(sp[n])
                let lattice = ap + n * time * rowStride
                func beta(_ t: Int) -> UnsafeMutablePointer<T> { betaRows + (t % 2) * rowStride + ctcPad }
                for t in stride(from: frames - 1, through: 0, by: -1) {
                    let cur = beta(t), lpt = lp + t * nc + n * c
                    let lo = Swift.max(0, states - 2 * (frames - t)), hi = Swift.min(states, 2 * t + 2)
                    (cur - ctcPad).update(repeating: -T.infinity, count: rowStride)
                    if t == frames - 1 {
                        cur[states - 1] = lpt[batch.blank]
                        if states > 1 { cur[states - 2] = lpt[ext[states - 2]] }
                    } else {
                        let next = beta(t + 1)
                        var s = lo
                        while s < hi {
                            // s → s+2 is allowed exactly when s-2 → s is in the forward direction, shifted.
                            cur[s] = logSumExp3(next[s], next[s + 1], next[s + 2] + skip[s + 2]) + lpt[ext[s]]
                            s += 1
                        }
                    }
                    let a = lattice + t * rowStride + ctcPad, gt = gp + t * nc + n * c
                    for j in 0..<c { gt[j] = T.exp(lpt[j]) }
                    var s = lo
                    while s < hi {
                        let e = lpt[ext[s]]
                        let occupancy = a[s] + cur[s] + loss - e
                        if occupancy > -T.infinity { gt[ext[s]] -= T.exp(occupancy) }
                        s += 1
                    }
                    for j in 0..<c { gt[j] *= g }
                }
            }
        }
    }
}
