/// Fused cross-entropy (log-softmax + NLL + label smoothing) and NLL kernels over rows of
/// C contiguous logits.
extension Kernels {
    /// Per-row max and log-sum-exp (shifted by the max) and loss of cross entropy on
    /// contiguous `[rows, c]` logits: with `z = x - max`, `loss[r] = (1-ε)·(lse(z) - z[t]) +
    /// ε·(lse(z) - mean_c z)`, 0 for ignored rows (label == ignoreIndex). Keeping the max apart
    /// (as PyTorch's log_softmax does) keeps float32 accurate for large logits. Labels must
    /// already be validated. `stats[2r]` = max, `stats[2r+1]` = log Σ exp(z).
    static func crossEntropyForward<T: FloatElement>(
        _ x: UnsafePointer<T>, rows: Int, c: Int, labels: UnsafePointer<Int64>, ignoreIndex: Int64,
        smoothing: Double, stats: UnsafeMutablePointer<T>, loss: UnsafeMutablePointer<Double>
    ) {
        nonisolated(unsafe) let (xp, lp, sp, op) = (x, labels, stats, loss)
        Parallel.forRanges(rows, costPerItem: c * 8) { range in
            for r in range {
                let row = xp + r * c
                var m = -T.infinity
                for j in 0..<c where row[j] > m || row[j].isNaN { m = row[j]; if m.isNaN { break } }
                if !m.isFinite { m = m.isNaN ? m : 0 }
                var total: T = 0
                for j in 0..<c { total += T.exp(row[j] - m) }
                let logSum = T.log(total)
                sp[2 * r] = m
                sp[2 * r + 1] = logSum
                let t = lp[r]
                if t == ignoreIndex {
                    op[r] = 0
                    continue
                }
                let ls = logSum.doubleValue
                var value = (1 - smoothing) * (ls - (row[Int(t)] - m).doubleValue)
                if smoothing != 0 {
                    value += smoothing * (ls - laneShiftedSum(row, c, m) / Double(c))
                }
                op[r] = value
            }
        }
    }

    /// dx[r, j] = scale[r]·(softmax_j - (1-ε)·[j == t] - ε/C), and 0 for ignored rows.
    static func crossEntropyBackward<T: FloatElement>(
        _ x: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, rows: Int, c: Int, labels: UnsafePointer<Int64>,
        ignoreIndex: Int64, smoothing: Double, stats: UnsafePointer<T>, scale: UnsafePointer<T>, scaleStride: Int
    ) {
        nonisolated(unsafe) let (xp, dp, lp, sp, gp) = (x, dx, labels, stats, scale)
        let uniform = T(smoothing / Double(c))
        let hit = T(1 - smoothing)
        Parallel.forRanges(rows, costPerItem: c * 8) { range in
            for r in range {
                let row = xp + r * c, d = dp + r * c
                let t = lp[r]
                if t == ignoreIndex {
                    d.update(repeating: 0, count: c)
                    continue
                }
                let s = gp[r * scaleStride], m = sp[2 * r], logSum = sp[2 * r + 1]
                let su = s * uniform
                for j in 0..<c { d[j] = s * T.exp((row[j] - m) - logSum) - su }
                d[Int(t)] -= s * hit
            }
        }
    }
}

extension Kernels {
    /// The first label that is neither in 0..<c nor `ignoreIndex`, or nil.
    static func firstInvalidLabel(_ labels: Tensor, classes c: Int, ignoreIndex: Int64) -> Int64? {
        let p = labels.contiguousStorage().elementPointer(Int64.self)
        for i in 0..<labels.count {
            let t = p[i]
            if t != ignoreIndex && (t < 0 || t >= Int64(c)) { return t }
        }
        return nil
    }

    /// Per-row `-logProbs[r, t]` (0 for ignored rows) on contiguous `[rows, c]` input.
    static func nllForward<T: FloatElement>(
        _ x: UnsafePointer<T>, rows: Int, c: Int, labels: UnsafePointer<Int64>, ignoreIndex: Int64,
        loss: UnsafeMutablePointer<Double>
    ) {
        for r in 0..<rows {
            let t = labels[r]
            loss[r] = t == ignoreIndex ? 0 : -x[r * c + Int(t)].doubleValue
        }
    }

    /// dx[r, t] = -scale[r] (0 elsewhere and on ignored rows); `dx` must be zeroed.
    static func nllBackward<T: FloatElement>(
        _ dx: UnsafeMutablePointer<T>, rows: Int, c: Int, labels: UnsafePointer<Int64>, ignoreIndex: Int64,
        scale: UnsafePointer<T>, scaleStride: Int
    ) {
        for r in 0..<rows {
            let t = labels[r]
            if t != ignoreIndex { dx[r * c + Int(t)] = -scale[r * scaleStride] }
        }
    }
}
