/// Fused cross-entropy (log-softmax + NLL + label smoothing) and NLL kernels over rows of
/// C contiguous logits.
extension Kernels {
    /// Per-row max and log-sum-exp (shifted by the max) and loss of cross entropy on
    /// contiguous `[rows, c]` logits: with `z = x - max`, `loss[r] = (1-ε)·(lse(z) - z[t]) +
    /// ε·(lse(z) - mean_c z)`, 0 for ignored rows (label == ignoreIndex). Keeping the max apart
    /// (as PyTorch's log_softmax does) keeps float32 accurate for large logits. Labels must
    /// already be validated. When `probs` is given, each row's softmax is written there for
    /// the backward pass.
    static func crossEntropyForward<T: FloatElement>(
        _ x: UnsafePointer<T>, rows: Int, c: Int, labels: UnsafePointer<Int64>, ignoreIndex: Int64,
        smoothing: Double, loss: UnsafeMutablePointer<Double>, probs: UnsafeMutablePointer<T>?
    ) {
        nonisolated(unsafe) let (xp, lp, op, pp) = (x, labels, loss, probs)
        Parallel.forRanges(rows, costPerItem: c * 8) { range in
            for r in range {
                let row = xp + r * c
                var m = rowMax(row, c)
                if !m.isFinite { m = 0 }
                let logSum: T
                if let pp {
                    let pr = pp + r * c
                    let total = rowExpSumStoring(row, pr, c, m)
                    let inverse = 1 / total
                    for j in 0..<c { pr[j] *= inverse }
                    logSum = T.log(total)
                } else {
                    logSum = T.log(rowExpSum(row, c, m))
                }
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

    /// dx[r, j] = scale[r]·(softmax_j - (1-ε)·[j == t] - ε/C), and 0 for ignored rows, from
    /// the probabilities saved by the forward pass.
    static func crossEntropyBackward<T: FloatElement>(
        _ probs: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, rows: Int, c: Int, labels: UnsafePointer<Int64>,
        ignoreIndex: Int64, smoothing: Double, scale: UnsafePointer<T>, scaleStride: Int
    ) {
        nonisolated(unsafe) let (pp, dp, lp, gp) = (probs, dx, labels, scale)
        let uniform = T(smoothing / Double(c))
        let hit = T(1 - smoothing)
        Parallel.forRanges(rows, costPerItem: c * 2) { range in
            for r in range {
                let p = pp + r * c, d = dp + r * c
                let t = lp[r]
                if t == ignoreIndex {
                    d.update(repeating: 0, count: c)
                    continue
                }
                let s = gp[r * scaleStride]
                let su = s * uniform
                for j in 0..<c { d[j] = s * p[j] - su }
                d[Int(t)] -= s * hit
            }
        }
    }
}

/// Row helpers of the loss kernels; Float paths use explicit SIMD so that they vectorise.
extension Kernels {
    /// The maximum of a row, ignoring NaN (a NaN then propagates through the exp sum).
    @inline(__always)
    static func rowMax<T: FloatElement>(_ p: UnsafePointer<T>, _ n: Int) -> T {
        if T.self == Float.self {
            return unsafeBitCast(rowMaxFloat(UnsafeRawPointer(p).assumingMemoryBound(to: Float.self), n), to: T.self)
        }
        var m = -T.infinity
        for j in 0..<n where p[j] > m { m = p[j] }
        return m
    }

    /// Σ exp(p[j] - m).
    @inline(__always)
    static func rowExpSum<T: FloatElement>(_ p: UnsafePointer<T>, _ n: Int, _ m: T) -> T {
        if T.self == Float.self {
            let r = rowExpSumFloat(UnsafeRawPointer(p).assumingMemoryBound(to: Float.self), n, unsafeBitCast(m, to: Float.self))
            return unsafeBitCast(r, to: T.self)
        }
        var total: T = 0
        for j in 0..<n { total += T.exp(p[j] - m) }
        return total
    }

    /// Σ exp(p[j] - m), writing each exp(p[j] - m) to out[j].
    @inline(__always)
    static func rowExpSumStoring<T: FloatElement>(_ p: UnsafePointer<T>, _ out: UnsafeMutablePointer<T>, _ n: Int, _ m: T) -> T {
        if T.self == Float.self {
            let r = rowExpSumStoringFloat(UnsafeRawPointer(p).assumingMemoryBound(to: Float.self),
                                          UnsafeMutableRawPointer(out).assumingMemoryBound(to: Float.self), n,
                                          unsafeBitCast(m, to: Float.self))
            return unsafeBitCast(r, to: T.self)
        }
        var total: T = 0
        for j in 0..<n { let e = T.exp(p[j] - m); out[j] = e; total += e }
        return total
    }

    static func rowMaxFloat(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var lanes = SIMD8<Float>(repeating: -.infinity)
        var j = 0
        let raw = UnsafeRawPointer(p)
        while j + 8 <= n {
            let v = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
            lanes.replace(with: v, where: v .> lanes)
            j += 8
        }
        var m = lanes.max()
        while j < n { if p[j] > m { m = p[j] }; j += 1 }
        return m
    }

    static func rowExpSumFloat(_ p: UnsafePointer<Float>, _ n: Int, _ m: Float) -> Float {
        var lanes = SIMD8<Float>(repeating: 0)
        var j = 0
        let raw = UnsafeRawPointer(p)
        let shift = SIMD8<Float>(repeating: m)
        while j + 8 <= n {
            lanes += FastMath.exp8(raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) - shift)
            j += 8
        }
        var total = lanes.sum()
        while j < n { total += FastMath.exp(p[j] - m); j += 1 }
        return total
    }

    static func rowExpSumStoringFloat(_ p: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, _ m: Float) -> Float {
        var lanes = SIMD8<Float>(repeating: 0)
        var j = 0
        let raw = UnsafeRawPointer(p), dst = UnsafeMutableRawPointer(out)
        let shift = SIMD8<Float>(repeating: m)
        while j + 8 <= n {
            let e = FastMath.exp8(raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) - shift)
            dst.storeBytes(of: e, toByteOffset: j * 4, as: SIMD8<Float>.self)
            lanes += e
            j += 8
        }
        var total = lanes.sum()
        while j < n { let e = FastMath.exp(p[j] - m); out[j] = e; total += e; j += 1 }
        return total
    }

}

extension Kernels {
    /// The first label that is neither in 0..<c nor `ignoreIndex`, or nil.
    static func firstInvalidLabel(_ labels: Tensor, classes c: Int, ignoreIndex: Int64) -> Int64? {
        // Keep the contiguous copy (made for a strided view) alive while its pointer is read.
        let contiguous = labels.contiguousStorage()
        return withExtendedLifetime(contiguous) {
            let p = contiguous.elementPointer(Int64.self)
            for i in 0..<labels.count {
                let t = p[i]
                if t != ignoreIndex && (t < 0 || t >= Int64(c)) { return t }
            }
            return nil
        }
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
