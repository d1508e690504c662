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
    /// e^x for Float: the FastMath polynomial with round-to-nearest done by adding and
    /// subtracting 1.5·2²³ instead of `rounded()` (a libm call without SSE4.1, which blocks
    /// vectorisation). NaN stays NaN, exp(-inf) = 0. Used for row tails; `expFloat8` is the
    /// eight-lane version.
    @inline(__always)
    static func lossExpFloat(_ x: Float) -> Float {
        // Branch-free so that loops over it vectorise: comparisons are false for NaN, so a NaN
        // input flows through the clamps and the polynomial and comes out NaN.
        var clamped = x < -103.9 ? -103.9 : x
        clamped = clamped > 88.72283 ? 88.72283 : clamped
        // n = round(x·log2 e): adding 1.5·2²³ leaves n in the low mantissa bits.
        let shifted = clamped * 1.44269504088896341 + 12582912
        let n = shifted - 12582912
        let k = Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000
        let r = clamped - n * 0.693359375 + n * 2.12194440e-4
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * r * r + r + 1
        let k1 = k >> 1
        let k2 = k &- k1
        let s1 = Float(bitPattern: UInt32(bitPattern: k1 &+ 127) << 23)
        let s2 = Float(bitPattern: UInt32(bitPattern: k2 &+ 127) << 23)
        var result = p * s1 * s2
        result = x < -103.9 ? 0 : result
        result = x > 88.72283 ? .infinity : result
        return result
    }

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
            lanes += expFloat8(raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) - shift)
            j += 8
        }
        var total = lanes.sum()
        while j < n { total += lossExpFloat(p[j] - m); j += 1 }
        return total
    }

    static func rowExpSumStoringFloat(_ p: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, _ m: Float) -> Float {
        var lanes = SIMD8<Float>(repeating: 0)
        var j = 0
        let raw = UnsafeRawPointer(p), dst = UnsafeMutableRawPointer(out)
        let shift = SIMD8<Float>(repeating: m)
        while j + 8 <= n {
            let e = expFloat8(raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) - shift)
            dst.storeBytes(of: e, toByteOffset: j * 4, as: SIMD8<Float>.self)
            lanes += e
            j += 8
        }
        var total = lanes.sum()
        while j < n { let e = lossExpFloat(p[j] - m); out[j] = e; total += e; j += 1 }
        return total
    }

    /// `lossExpFloat` on eight lanes.
    @inline(__always)
    static func expFloat8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        var clamped = x.replacing(with: -103.9, where: x .< -103.9)
        clamped.replace(with: 88.72283, where: clamped .> 88.72283)
        let shifted = clamped * 1.44269504088896341 + 12582912
        let n = shifted - 12582912
        let k = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let r = clamped - n * 0.693359375 + n * 2.12194440e-4
        var poly = SIMD8<Float>(repeating: 1.9875691500e-4)
        poly = poly * r + 1.3981999507e-3
        poly = poly * r + 8.3334519073e-3
        poly = poly * r + 4.1665795894e-2
        poly = poly * r + 1.6666665459e-1
        poly = poly * r + 5.0000001201e-1
        poly = poly * r * r + r + 1
        let k1 = k &>> 1
        let k2 = k &- k1
        let s1 = unsafeBitCast((k1 &+ 127) &<< 23, to: SIMD8<Float>.self)
        let s2 = unsafeBitCast((k2 &+ 127) &<< 23, to: SIMD8<Float>.self)
        var result = poly * s1 * s2
        result.replace(with: 0, where: x .< -103.9)
        result.replace(with: .infinity, where: x .> 88.72283)
        return result
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
