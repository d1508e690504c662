/// Fused normalisation kernels: batch norm over [N, C, S] (statistics per channel), and row
/// norms (layer norm, RMS norm, group norm) over rows of K contiguous elements, with their
/// hand-written backward passes.
///
/// Sums of float32 run in eight independent lanes (so the loop vectorises) and lane totals
/// are added in Double every 4096 elements, so long sums keep their precision. Per-channel
/// and per-row statistics are kept in Double.
extension Kernels {
    // MARK: - Lane sums

    /// Σ p[i] for i in 0..<n.
    @inline(__always)
    static func laneSum<T: FloatElement>(_ p: UnsafePointer<T>, _ n: Int) -> Double {
        if T.self == Float.self { return laneSumFloat(UnsafeRawPointer(p), n, 0, squared: false) }
        var total: Double = 0
        var start = 0
        while start < n {
            let end = Swift.min(n, start + 4096)
            var a0: T = 0, a1: T = 0, a2: T = 0, a3: T = 0, a4: T = 0, a5: T = 0, a6: T = 0, a7: T = 0
            var i = start
            while i + 8 <= end {
                a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3]
                a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7]
                i += 8
            }
            while i < end { a0 += p[i]; i += 1 }
            total += (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))).doubleValue
            start = end
        }
        return total
    }

    /// Σ (p[i] - m) for i in 0..<n.
    @inline(__always)
    static func laneShiftedSum<T: FloatElement>(_ p: UnsafePointer<T>, _ n: Int, _ m: T) -> Double {
        if T.self == Float.self { return laneSumFloat(UnsafeRawPointer(p), n, unsafeBitCast(m, to: Float.self), squared: false) }
        var total: Double = 0
        var start = 0
        while start < n {
            let end = Swift.min(n, start + 4096)
            var a0: T = 0, a1: T = 0, a2: T = 0, a3: T = 0, a4: T = 0, a5: T = 0, a6: T = 0, a7: T = 0
            var i = start
            while i + 8 <= end {
                a0 += p[i] - m; a1 += p[i + 1] - m; a2 += p[i + 2] - m; a3 += p[i + 3] - m
                a4 += p[i + 4] - m; a5 += p[i + 5] - m; a6 += p[i + 6] - m; a7 += p[i + 7] - m
                i += 8
            }
            while i < end { a0 += p[i] - m; i += 1 }
            total += (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))).doubleValue
            start = end
        }
        return total
    }

    /// Σ (p[i] - m)² for i in 0..<n.
    @inline(__always)
    static func laneSquaredDeviation<T: FloatElement>(_ p: UnsafePointer<T>, _ n: Int, _ m: T) -> Double {
        if T.self == Float.self { return laneSumFloat(UnsafeRawPointer(p), n, unsafeBitCast(m, to: Float.self), squared: true) }
        var total: Double = 0
        var start = 0
        while start < n {
            let end = Swift.min(n, start + 4096)
            var a0: T = 0, a1: T = 0, a2: T = 0, a3: T = 0, a4: T = 0, a5: T = 0, a6: T = 0, a7: T = 0
            var i = start
            while i + 8 <= end {
                let d0 = p[i] - m, d1 = p[i + 1] - m, d2 = p[i + 2] - m, d3 = p[i + 3] - m
                let d4 = p[i + 4] - m, d5 = p[i + 5] - m, d6 = p[i + 6] - m, d7 = p[i + 7] - m
                a0 += d0 * d0; a1 += d1 * d1; a2 += d2 * d2; a3 += d3 * d3
                a4 += d4 * d4; a5 += d5 * d5; a6 += d6 * d6; a7 += d7 * d7
                i += 8
            }
            while i < end { let d = p[i] - m; a0 += d * d; i += 1 }
            total += (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))).doubleValue
            start = end
        }
        return total
    }

    /// (Σ g[i], Σ g[i]·(x[i] - m)) for i in 0..<n.
    @inline(__always)
    static func laneGradSums<T: FloatElement>(_ g: UnsafePointer<T>, _ x: UnsafePointer<T>, _ n: Int, _ m: T)
        -> (sumG: Double, sumGX: Double)
    {
        if T.self == Float.self { return laneGradSumsFloat(UnsafeRawPointer(g), UnsafeRawPointer(x), n, unsafeBitCast(m, to: Float.self)) }
        var totalG: Double = 0, totalGX: Double = 0
        var start = 0
        while start < n {
            let end = Swift.min(n, start + 4096)
            var g0: T = 0, g1: T = 0, g2: T = 0, g3: T = 0
            var h0: T = 0, h1: T = 0, h2: T = 0, h3: T = 0
            var i = start
            while i + 4 <= end {
                g0 += g[i]; g1 += g[i + 1]; g2 += g[i + 2]; g3 += g[i + 3]
                h0 += g[i] * (x[i] - m); h1 += g[i + 1] * (x[i + 1] - m)
                h2 += g[i + 2] * (x[i + 2] - m); h3 += g[i + 3] * (x[i + 3] - m)
                i += 4
            }
            while i < end { g0 += g[i]; h0 += g[i] * (x[i] - m); i += 1 }
            totalG += ((g0 + g1) + (g2 + g3)).doubleValue
            totalGX += ((h0 + h1) + (h2 + h3)).doubleValue
            start = end
        }
        return (totalG, totalGX)
    }

    /// (Σ g[i]·w[i], Σ g[i]·w[i]·(x[i] - m)) for i in 0..<n.
    @inline(__always)
    static func laneWeightedGradSums<T: FloatElement>(_ g: UnsafePointer<T>, _ w: UnsafePointer<T>, _ x: UnsafePointer<T>,
                                                      _ n: Int, _ m: T) -> (Double, Double) {
        if T.self == Float.self {
            let gr = UnsafeRawPointer(g), wr = UnsafeRawPointer(w), xr = UnsafeRawPointer(x)
            let gf = gr.assumingMemoryBound(to: Float.self), wf = wr.assumingMemoryBound(to: Float.self)
            let xf = xr.assumingMemoryBound(to: Float.self), mf = unsafeBitCast(m, to: Float.self)
            let shift = SIMD8<Float>(repeating: mf)
            var totalA: Double = 0, totalB: Double = 0
            var start = 0
            while start < n {
                let end = Swift.min(n, start + 4096)
                var la = SIMD8<Float>(repeating: 0), lb = SIMD8<Float>(repeating: 0)
                var ta: Float = 0, tb: Float = 0
                var i = start
                while i + 8 <= end {
                    let v = gr.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                        * wr.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                    la += v
                    lb += v * (xr.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - shift)
                    i += 8
                }
                while i < end { let v = gf[i] * wf[i]; ta += v; tb += v * (xf[i] - mf); i += 1 }
                totalA += Double(la.sum()) + Double(ta)
                totalB += Double(lb.sum()) + Double(tb)
                start = end
            }
            return (totalA, totalB)
        }
        var a: Double = 0, b: Double = 0
        for i in 0..<n { let v = (g[i] * w[i]).doubleValue; a += v; b += v * (x[i] - m).doubleValue }
        return (a, b)
    }

    /// Σ (p[i] - m) or Σ (p[i] - m)² over n Floats, eight lanes at a time.
    @inline(__always)
    static func laneSumFloat(_ p: UnsafeRawPointer, _ n: Int, _ m: Float, squared: Bool) -> Double {
        let f = p.assumingMemoryBound(to: Float.self)
        let shift = SIMD8<Float>(repeating: m)
        var total: Double = 0
        var start = 0
        while start < n {
            let end = Swift.min(n, start + 4096)
            var lanes = SIMD8<Float>(repeating: 0)
            var tail: Float = 0
            var i = start
            while i + 8 <= end {
                let d = p.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - shift
                lanes += squared ? d * d : d
                i += 8
            }
            while i < end { let d = f[i] - m; tail += squared ? d * d : d; i += 1 }
            total += Double(lanes.sum()) + Double(tail)
            start = end
        }
        return total
    }

    /// (Σ g[i], Σ g[i]·(x[i] - m)) over n Floats, eight lanes at a time.
    @inline(__always)
    static func laneGradSumsFloat(_ g: UnsafeRawPointer, _ x: UnsafeRawPointer, _ n: Int, _ m: Float)
        -> (sumG: Double, sumGX: Double)
    {
        let gf = g.assumingMemoryBound(to: Float.self), xf = x.assumingMemoryBound(to: Float.self)
        let shift = SIMD8<Float>(repeating: m)
        var totalG: Double = 0, totalGX: Double = 0
        var start = 0
        while start < n {
            let end = Swift.min(n, start + 4096)
            var lanesG = SIMD8<Float>(repeating: 0), lanesGX = SIMD8<Float>(repeating: 0)
            var tailG: Float = 0, tailGX: Float = 0
            var i = start
            while i + 8 <= end {
                let gv = g.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                let xv = x.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                lanesG += gv
                lanesGX += gv * (xv - shift)
                i += 8
            }
            while i < end { tailG += gf[i]; tailGX += gf[i] * (xf[i] - m); i += 1 }
            totalG += Double(lanesG.sum()) + Double(tailG)
            totalGX += Double(lanesGX.sum()) + Double(tailGX)
            start = end
        }
        return (totalG, totalGX)
    }

    // MARK: - Batch norm over [N, C, S]

    /// Per-channel mean and Σ(x - mean)² of a contiguous [n, c, s] buffer with short runs
    /// (s < 8, e.g. [N, C]): rows are walked with channels innermost, parallel over channel
    /// ranges, accumulating in Double. Runs of 8 or more use `batchNormTrainingForward`.
    static func channelStatistics<T: FloatElement>(
        _ x: UnsafePointer<T>, n: Int, c: Int, s: Int,
        mean: UnsafeMutablePointer<Double>, squaredDeviation: UnsafeMutablePointer<Double>
    ) {
        nonisolated(unsafe) let (xp, mp, vp) = (x, mean, squaredDeviation)
        let m = Double(n * s)
        Parallel.forRanges(c, costPerItem: n * s * 2) { range in
            for ch in range { mp[ch] = 0; vp[ch] = 0 }
            for i in 0..<n {
                for ch in range {
                    let row = xp + (i * c + ch) * s
                    var t: Double = 0
                    for j in 0..<s { t += row[j].doubleValue }
                    mp[ch] += t
                }
            }
            for ch in range { mp[ch] /= m }
            for i in 0..<n {
                for ch in range {
                    let row = xp + (i * c + ch) * s
                    let mu = mp[ch]
                    var t: Double = 0
                    for j in 0..<s { let d = row[j].doubleValue - mu; t += d * d }
                    vp[ch] += t
                }
            }
        }
    }

    /// y = (x - center[ch])·scale[ch] + shift[ch] over a contiguous [n, c, s] buffer.
    static func channelAffine<T: FloatElement>(
        _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, n: Int, c: Int, s: Int,
        center: UnsafePointer<T>, scale: UnsafePointer<T>, shift: UnsafePointer<T>
    ) {
        nonisolated(unsafe) let (xp, yp, ce, sc, sh) = (x, y, center, scale, shift)
        Parallel.forRanges(n * c, costPerItem: s) { range in
            for row in range {
                let ch = row % c
                let m = ce[ch], a = sc[ch], b = sh[ch]
                let src = xp + row * s, dst = yp + row * s
                for j in 0..<s { dst[j] = (src[j] - m) * a + b }
            }
        }
    }

    /// Per-channel Σg and Σ g·(x - mean[ch]) over a contiguous [n, c, s] pair with short runs
    /// (s < 8), accumulating in Double. Runs of 8 or more use `batchNormBackward`.
    static func channelGradSums<T: FloatElement>(
        _ g: UnsafePointer<T>, _ x: UnsafePointer<T>, n: Int, c: Int, s: Int, mean: UnsafePointer<Double>,
        sumG: UnsafeMutablePointer<Double>, sumGX: UnsafeMutablePointer<Double>
    ) {
        nonisolated(unsafe) let (gp, xp, mp, sg, sgx) = (g, x, mean, sumG, sumGX)
        Parallel.forRanges(c, costPerItem: n * s * 2) { range in
            for ch in range { sg[ch] = 0; sgx[ch] = 0 }
            for i in 0..<n {
                for ch in range {
                    let o = (i * c + ch) * s
                    let mu = mp[ch]
                    var a: Double = 0, b: Double = 0
                    for j in 0..<s {
                        let gv = gp[o + j].doubleValue
                        a += gv
                        b += gv * (xp[o + j].doubleValue - mu)
                    }
                    sg[ch] += a
                    sgx[ch] += b
                }
            }
        }
    }

    /// dx = g·k1[ch] + (x - center[ch])·k2[ch] + k3[ch] over a contiguous [n, c, s] buffer.
    static func channelLinearCombination<T: FloatElement>(
        _ g: UnsafePointer<T>, _ x: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, n: Int, c: Int, s: Int,
        center: UnsafePointer<T>, k1: UnsafePointer<T>, k2: UnsafePointer<T>, k3: UnsafePointer<T>
    ) {
        nonisolated(unsafe) let (gp, xp, dp, ce, p1, p2, p3) = (g, x, dx, center, k1, k2, k3)
        Parallel.forRanges(n * c, costPerItem: s * 2) { range in
            for row in range {
                let ch = row % c
                let m = ce[ch], a = p1[ch], b = p2[ch], e = p3[ch]
                let o = row * s
                let gr = gp + o, xr = xp + o, dr = dp + o
                for j in 0..<s { dr[j] = gr[j] * a + (xr[j] - m) * b + e }
            }
        }
    }

    /// Training-mode batch norm forward fused per channel (for S ≥ 8): the channel's mean and
    /// Σ(x - mean)², then y = x̂·w + b written while the channel is still in cache.
    /// `weight` and `bias` hold C values each; `mean`/`squaredDeviation` receive C values.
    static func batchNormTrainingForward<T: FloatElement>(
        _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, n: Int, c: Int, s: Int, eps: Double,
        weight: UnsafePointer<Double>, bias: UnsafePointer<Double>,
        mean: UnsafeMutablePointer<Double>, squaredDeviation: UnsafeMutablePointer<Double>
    ) {
        nonisolated(unsafe) let (xp, yp, wp, bp, mp, vp) = (x, y, weight, bias, mean, squaredDeviation)
        let m = Double(n * s)
        Parallel.forRanges(c, costPerItem: n * s * 4) { range in
            for ch in range {
                var total: Double = 0
                for i in 0..<n { total += laneSum(xp + (i * c + ch) * s, s) }
                let mu = total / m
                let muT = T(mu)
                var sq: Double = 0
                for i in 0..<n { sq += laneSquaredDeviation(xp + (i * c + ch) * s, s, muT) }
                let shiftError = mu - muT.doubleValue
                sq = Swift.max(sq - m * shiftError * shiftError, 0)
                mp[ch] = mu
                vp[ch] = sq
                // y = (x - μ')·a + (b + (μ' - μ)·a), μ' = T(μ).
                let scale = wp[ch] / (sq / m + eps).squareRoot()
                let a = T(scale), e = T(bp[ch] - shiftError * scale)
                for i in 0..<n {
                    let o = (i * c + ch) * s
                    let src = xp + o, dst = yp + o
                    for j in 0..<s { dst[j] = (src[j] - muT) * a + e }
                }
            }
        }
    }

    /// Batch norm backward fused per channel (for S ≥ 8): Σg and Σ g·(x - center) of the
    /// channel, then dx = a·(g - Σg/M - x̂·Σ(g·x̂)/M) in training mode or dx = a·g in eval mode,
    /// with a = w·invstd and x̂ = (x - center)·invstd. `sumG`/`sumGX` receive C values.
    static func batchNormBackward<T: FloatElement>(
        _ g: UnsafePointer<T>, _ x: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, n: Int, c: Int, s: Int,
        training: Bool, center: UnsafePointer<Double>, invstd: UnsafePointer<Double>, weight: UnsafePointer<Double>,
        sumG: UnsafeMutablePointer<Double>, sumGX: UnsafeMutablePointer<Double>
    ) {
        nonisolated(unsafe) let (gp, xp, dp, cp, ip, wp, sg, sgx) = (g, x, dx, center, invstd, weight, sumG, sumGX)
        let md = Double(n * s)
        Parallel.forRanges(c, costPerItem: n * s * 4) { range in
            for ch in range {
                let mu = cp[ch]
                let muT = T(mu)
                let shiftError = mu - muT.doubleValue
                var a: Double = 0, b: Double = 0
                for i in 0..<n {
                    let o = (i * c + ch) * s
                    let r = laneGradSums(gp + o, xp + o, s, muT)
                    a += r.sumG
                    b += r.sumGX
                }
                b -= shiftError * a  // Σ g(x - μ) = Σ g(x - μ') - (μ - μ')Σg
                sg[ch] = a
                sgx[ch] = b
                let scale = wp[ch] * ip[ch]
                let k1 = T(scale)
                var k2: T = 0, k3: T = 0
                if training {
                    let slope = -scale * ip[ch] * ip[ch] * b / md
                    k2 = T(slope)
                    k3 = T(-scale * a / md - slope * shiftError)
                }
                for i in 0..<n {
                    let o = (i * c + ch) * s
                    let gr = gp + o, xr = xp + o, dr = dp + o
                    if training {
                        for j in 0..<s { dr[j] = gr[j] * k1 + (xr[j] - muT) * k2 + k3 }
                    } else {
                        for j in 0..<s { dr[j] = gr[j] * k1 }
                    }
                }
            }
        }
    }

    // MARK: - Row norms (layer norm, RMS norm, group norm)

    /// How a row norm maps its parameters: each row of K = cg·s elements is cg blocks of s
    /// elements; block `cc` of row `r` uses parameter `(r % groups)·cg + cc`.
    /// Layer norm: groups 1, cg = K, s = 1. Group norm: cg = C/G, s = spatial size.
    struct RowNormLayout {
        let rows: Int
        let groups: Int
        let cg: Int
        let s: Int
        var k: Int { cg * s }
        /// Number of parameters (C for group norm, K for layer norm).
        var params: Int { groups * cg }
    }

    /// Per-row mean (0 when not centred) and 1/sqrt(var + eps), where var is the biased
    /// variance (centred) or the mean square (RMS).
    static func rowStatistics<T: FloatElement>(
        _ x: UnsafePointer<T>, rows: Int, k: Int, centered: Bool, eps: Double,
        mean: UnsafeMutablePointer<Double>, rstd: UnsafeMutablePointer<Double>
    ) {
        nonisolated(unsafe) let (xp, mp, rp) = (x, mean, rstd)
        let kd = Double(Swift.max(k, 1))
        Parallel.forRanges(rows, costPerItem: k * 2) { range in
            for r in range {
                let row = xp + r * k
                if centered {
                    let mu = laneSum(row, k) / kd
                    let muT = T(mu)
                    let shift = mu - muT.doubleValue
                    let sq = Swift.max(laneSquaredDeviation(row, k, muT) - kd * shift * shift, 0)
                    mp[r] = mu
                    rp[r] = 1 / (sq / kd + eps).squareRoot()
                } else {
                    mp[r] = 0
                    rp[r] = 1 / (laneSquaredDeviation(row, k, 0) / kd + eps).squareRoot()
                }
            }
        }
    }

    /// y = (x - mean[r])·rstd[r]·w[p] + b[p] for every row (w, b optional).
    static func rowNormForward<T: FloatElement>(
        _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, layout: RowNormLayout,
        mean: UnsafePointer<Double>, rstd: UnsafePointer<Double>,
        weight: UnsafePointer<T>?, bias: UnsafePointer<T>?
    ) {
        nonisolated(unsafe) let (xp, yp, mp, rp, wp, bp) = (x, y, mean, rstd, weight, bias)
        let k = layout.k, s = layout.s, cg = layout.cg, groups = layout.groups
        Parallel.forRanges(layout.rows, costPerItem: k) { range in
            for r in range {
                let src = xp + r * k, dst = yp + r * k
                // x̂ = (x - μ')·rstd + (μ' - μ)·rstd, with μ' the mean rounded to T.
                let muT = T(mp[r])
                let rs = T(rp[r])
                let shift = T((muT.doubleValue - mp[r]) * rp[r])
                if s == 1, groups == 1 {
                    switch (wp, bp) {
                    case let (w?, b?): for j in 0..<k { dst[j] = ((src[j] - muT) * rs + shift) * w[j] + b[j] }
                    case let (w?, nil): for j in 0..<k { dst[j] = ((src[j] - muT) * rs + shift) * w[j] }
                    case let (nil, b?): for j in 0..<k { dst[j] = (src[j] - muT) * rs + shift + b[j] }
                    case (nil, nil): for j in 0..<k { dst[j] = (src[j] - muT) * rs + shift }
                    }
                } else {
                    let p0 = (r % groups) * cg
                    for cc in 0..<cg {
                        let w: T = wp.map { $0[p0 + cc] } ?? 1
                        let b: T = bp.map { $0[p0 + cc] } ?? 0
                        let a = rs * w, e = shift * w + b
                        let xs = src + cc * s, ys = dst + cc * s
                        for j in 0..<s { ys[j] = (xs[j] - muT) * a + e }
                    }
                }
            }
        }
    }

    /// dx for a row norm: with gw = g·w and x̂ = (x - mean)·rstd,
    /// dx = rstd·(gw - mean(gw) - x̂·mean(gw·x̂)) (centred) or rstd·(gw - x̂·mean(gw·x̂)) (RMS).
    static func rowNormBackwardInput<T: FloatElement>(
        _ g: UnsafePointer<T>, _ x: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, layout: RowNormLayout,
        centered: Bool, mean: UnsafePointer<Double>, rstd: UnsafePointer<Double>, weight: UnsafePointer<T>?
    ) {
        nonisolated(unsafe) let (gp, xp, dp, mp, rp, wp) = (g, x, dx, mean, rstd, weight)
        let k = layout.k, s = layout.s, cg = layout.cg, groups = layout.groups
        let kd = Double(Swift.max(k, 1))
        Parallel.forRanges(layout.rows, costPerItem: k * 3) { range in
            for r in range {
                let gr = gp + r * k, xr = xp + r * k, dr = dp + r * k
                let mu = mp[r], rs = rp[r]
                let muT = T(mu)
                let p0 = (r % groups) * cg
                // Σ gw and Σ gw·(x - μ).
                var sumGW: Double = 0, sumGWX: Double = 0
                if let w = wp {
                    if s == 1, groups == 1 {
                        (sumGW, sumGWX) = laneWeightedGradSums(gr, w, xr, k, muT)
                    } else {
                        for cc in 0..<cg {
                            let o = cc * s
                            let sums = laneGradSums(gr + o, xr + o, s, muT)
                            let wv = w[p0 + cc].doubleValue
                            sumGW += wv * sums.sumG
                            sumGWX += wv * sums.sumGX
                        }
                    }
                } else {
                    let sums = laneGradSums(gr, xr, k, muT)
                    sumGW = sums.sumG
                    sumGWX = sums.sumGX
                }
                sumGWX -= (mu - muT.doubleValue) * sumGW
                // dx = rs·gw - rs·(sumGW/K) - (x - μ)·rs³·sumGWX/K, written around μ' = T(μ).
                let a = T(rs)
                let slope = -rs * rs * rs * sumGWX / kd
                let bx = T(slope)
                let c0 = T((centered ? -rs * sumGW / kd : 0) + slope * (muT.doubleValue - mu))
                if let w = wp {
                    if s == 1, groups == 1 {
                        for j in 0..<k { dr[j] = gr[j] * w[j] * a + (xr[j] - muT) * bx + c0 }
                    } else {
                        for cc in 0..<cg {
                            let aw = a * w[p0 + cc]
                            let o = cc * s
                            for j in o..<(o + s) { dr[j] = gr[j] * aw + (xr[j] - muT) * bx + c0 }
                        }
                    }
                } else {
                    for j in 0..<k { dr[j] = gr[j] * a + (xr[j] - muT) * bx + c0 }
                }
            }
        }
    }

    /// dweight[p] = Σ g·x̂ and dbias[p] = Σ g over all elements using parameter p,
    /// parallel over parameters.
    static func rowNormBackwardParams<T: FloatElement>(
        _ g: UnsafePointer<T>, _ x: UnsafePointer<T>, layout: RowNormLayout,
        mean: UnsafePointer<Double>, rstd: UnsafePointer<Double>,
        dweight: UnsafeMutablePointer<Double>, dbias: UnsafeMutablePointer<Double>
    ) {
        nonisolated(unsafe) let (gp, xp, mp, rp, dw, db) = (g, x, mean, rstd, dweight, dbias)
        let k = layout.k, s = layout.s, cg = layout.cg, groups = layout.groups
        let params = layout.params
        let outer = layout.rows / Swift.max(groups, 1)
        Parallel.forRanges(params, costPerItem: outer * s * 2) { range in
            for p in range { dw[p] = 0; db[p] = 0 }
            if s == 1, groups == 1 {
                // Layer norm: rows outer, parameters (columns) inner and contiguous. Column sums
                // accumulate in T over blocks of rows and are flushed to Double per block.
                let lo = range.lowerBound, width = range.count
                let scratch = UnsafeMutablePointer<T>.allocate(capacity: 2 * width)
                defer { scratch.deallocate() }
                let sw = scratch, sb = scratch + width
                var r0 = 0
                while r0 < layout.rows {
                    let r1 = Swift.min(layout.rows, r0 + 256)
                    sw.update(repeating: 0, count: width)
                    sb.update(repeating: 0, count: width)
                    for r in r0..<r1 {
                        let muT = T(mp[r]), rs = T(rp[r])
                        let gr = gp + r * k + lo, xr = xp + r * k + lo
                        for j in 0..<width {
                            sw[j] += gr[j] * ((xr[j] - muT) * rs)
                            sb[j] += gr[j]
                        }
                    }
                    for j in 0..<width {
                        dw[lo + j] += sw[j].doubleValue
                        db[lo + j] += sb[j].doubleValue
                    }
                    r0 = r1
                }
            } else {
                for p in range {
                    let gi = p / cg, cc = p % cg
                    var a: Double = 0, b: Double = 0
                    for n in 0..<outer {
                        let r = n * groups + gi
                        let muT = T(mp[r])
                        let o = r * k + cc * s
                        let sums = laneGradSums(gp + o, xp + o, s, muT)
                        a += sums.sumG
                        b += (sums.sumGX - (mp[r] - muT.doubleValue) * sums.sumG) * rp[r]
                    }
                    db[p] = a
                    dw[p] = b
                }
            }
        }
    }
}

extension Kernels {
    /// Layer, RMS or group norm of contiguous `x` by `layout` (`centered`: subtract the mean),
    /// with the optional contiguous `weight` and `bias`; the output and what the backward pass needs.
    static func rowNormForward(_ x: Tensor, layout: RowNormLayout, centered: Bool, weight: Tensor?, bias: Tensor?,
                               eps: Double) -> (Tensor, RowNormState) {
        var mean = [Double](repeating: 0, count: layout.rows), rstd = [Double](repeating: 0, count: layout.rows)
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        mean.withUnsafeMutableBufferPointer { mb in
            rstd.withUnsafeMutableBufferPointer { rb in
                func run<T: FloatElement>(_: T.Type) {
                    rowStatistics(x.elementPointer(T.self), rows: layout.rows, k: layout.k, centered: centered, eps: eps,
                                  mean: mb.baseAddress!, rstd: rb.baseAddress!)
                    rowNormForward(x.elementPointer(T.self), out.elementPointer(T.self), layout: layout,
                                   mean: mb.baseAddress!, rstd: rb.baseAddress!,
                                   weight: weight.map { UnsafePointer($0.elementPointer(T.self)) },
                                   bias: bias.map { UnsafePointer($0.elementPointer(T.self)) })
                }
                withExtendedLifetime((x, weight, bias)) { if x.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
            }
        }
        let state = RowNormState(x: x.detach(), weight: weight?.detach(), layout: layout, centered: centered, mean: mean, rstd: rstd,
                                 weightShape: weight?.shape, biasShape: bias?.shape)
        return (out, state)
    }

    /// dx, and dweight and dbias where the forward pass had them, for the output gradient `g`.
    static func rowNormBackward(_ state: RowNormState, gradOut g: Tensor) -> [Tensor?] {
        let (x, layout, dtype) = (state.x, state.layout, state.x.dtype)
        let gc = g.contiguousStorage()
        let dx = Tensor(uninitializedShape: x.shape, dtype: dtype)
        let needParams = state.weightShape != nil || state.biasShape != nil
        var dw = [Double](repeating: 0, count: needParams ? layout.params : 0)
        var db = [Double](repeating: 0, count: needParams ? layout.params : 0)
        state.mean.withUnsafeBufferPointer { mb in
            state.rstd.withUnsafeBufferPointer { rb in
                dw.withUnsafeMutableBufferPointer { dwb in
                    db.withUnsafeMutableBufferPointer { dbb in
                        func run<T: FloatElement>(_: T.Type) {
                            rowNormBackwardInput(gc.elementPointer(T.self), x.elementPointer(T.self), dx.elementPointer(T.self),
                                                 layout: layout, centered: state.centered, mean: mb.baseAddress!, rstd: rb.baseAddress!,
                                                 weight: state.weight.map { UnsafePointer($0.elementPointer(T.self)) })
                            if needParams {
                                rowNormBackwardParams(gc.elementPointer(T.self), x.elementPointer(T.self), layout: layout,
                                                      mean: mb.baseAddress!, rstd: rb.baseAddress!,
                                                      dweight: dwb.baseAddress!, dbias: dbb.baseAddress!)
                            }
                        }
                        withExtendedLifetime((gc, x, state.weight)) { if dtype == .float64 { run(Double.self) } else { run(Float.self) } }
                    }
                }
            }
        }
        var grads: [Tensor?] = [dx]
        if let shape = state.weightShape { grads.append(Tensor(dw, shape: shape, dtype: dtype)) }
        if let shape = state.biasShape { grads.append(Tensor(db, shape: shape, dtype: dtype)) }
        return grads
    }
}

/// What layer, RMS and group norm keep for their gradient.
struct RowNormState: @unchecked Sendable {
    /// The contiguous input and weight.
    let x: Tensor, weight: Tensor?
    let layout: Kernels.RowNormLayout
    let centered: Bool
    /// Per normalised row: the mean and 1/√(var + eps).
    let mean: [Double], rstd: [Double]
    let weightShape: [Int]?, biasShape: [Int]?
}
