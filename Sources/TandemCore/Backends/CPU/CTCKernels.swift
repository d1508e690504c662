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
            let emit = UnsafeMutablePointer<T>.allocate(capacity: rowStride)
            defer { ext.deallocate(); skip.deallocate(); emit.deallocate() }
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
                    let lo = Swift.max(0, states - 2 * (frames - t)), hi = Swift.max(lo, Swift.min(states, 2 * t + 2))
                    (cur - ctcPad).update(repeating: -T.infinity, count: rowStride)
                    for s in lo..<hi { emit[s] = lpt[ext[s]] }
                    ctcRecursionRow(prev + lo, prev + lo - 1, prev + lo - 2, skip + lo, emit + lo, cur + lo, hi - lo)
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
            let emit = UnsafeMutablePointer<T>.allocate(capacity: rowStride)
            let occupancy = UnsafeMutablePointer<T>.allocate(capacity: rowStride)
            defer { ext.deallocate(); skip.deallocate(); betaRows.deallocate(); emit.deallocate(); occupancy.deallocate() }
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
                    let lo = Swift.max(0, states - 2 * (frames - t)), hi = Swift.max(lo, Swift.min(states, 2 * t + 2))
                    (cur - ctcPad).update(repeating: -T.infinity, count: rowStride)
                    for s in lo..<hi { emit[s] = lpt[ext[s]] }
                    if t == frames - 1 {
                        cur[states - 1] = lpt[batch.blank]
                        if states > 1 { cur[states - 2] = lpt[ext[states - 2]] }
                    } else {
                        // s → s+2 is allowed exactly when s → s+2 is in the forward direction: skip[s + 2].
                        let next = beta(t + 1)
                        ctcRecursionRow(next + lo, next + lo + 1, next + lo + 2, skip + lo + 2, emit + lo, cur + lo, hi - lo)
                    }
                    let a = lattice + t * rowStride + ctcPad, gt = gp + t * nc + n * c
                    ctcOccupancies(a + lo, cur + lo, emit + lo, loss, occupancy + lo, hi - lo)
                    for j in 0..<c { gt[j] = T.exp(lpt[j]) }
                    for s in lo..<hi { gt[ext[s]] -= occupancy[s] }
                    for j in 0..<c { gt[j] *= g }
                }
            }
        }
    }

    /// One row of the α (or, with the neighbours mirrored, β) recursion:
    /// `out[s] = log(e^a[s] + e^b[s] + e^(c[s] + mask[s])) + emit[s]`, -inf when all three are -inf.
    @inline(__always)
    static func ctcRecursionRow<T: FloatElement>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ c: UnsafePointer<T>,
                                                 _ mask: UnsafePointer<T>, _ emit: UnsafePointer<T>,
                                                 _ out: UnsafeMutablePointer<T>, _ count: Int) {
        if T.self == Float.self {
            func f(_ p: UnsafePointer<T>) -> UnsafeRawPointer { UnsafeRawPointer(p) }
            ctcRecursionRowFloat(f(a), f(b), f(c), f(mask), f(emit), UnsafeMutableRawPointer(out), count)
            return
        }
        for s in 0..<count { out[s] = logSumExp3(a[s], b[s], c[s] + mask[s]) + emit[s] }
    }

    /// `ctcRecursionRow` for Float, eight states at a time.
    static func ctcRecursionRowFloat(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ c: UnsafeRawPointer,
                                     _ mask: UnsafeRawPointer, _ emit: UnsafeRawPointer, _ out: UnsafeMutableRawPointer,
                                     _ count: Int) {
        var s = 0
        let none = SIMD8<Float>(repeating: -.infinity)
        while s + 8 <= count {
            let offset = s * 4
            let x = a.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            let y = b.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            let z = c.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
                + mask.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            // Sorted enough to skip one exp: m is the largest, r and q the other two.
            let xy = x .< y
            let p = x.replacing(with: y, where: xy), q = y.replacing(with: x, where: xy)
            let pz = p .< z
            let m = p.replacing(with: z, where: pz), r = z.replacing(with: p, where: pz)
            let empty = m .== none
            let shift = m.replacing(with: 0, where: empty)
            let total = 1 + FastMath.exp8(r - shift) + FastMath.exp8(q - shift)
            var result = shift + FastMath.log8(total) + emit.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            result.replace(with: none, where: empty)
            out.storeBytes(of: result, toByteOffset: offset, as: SIMD8<Float>.self)
            s += 8
        }
        let (fa, fb, fc) = (a.assumingMemoryBound(to: Float.self), b.assumingMemoryBound(to: Float.self), c.assumingMemoryBound(to: Float.self))
        let (fm, fe, fo) = (mask.assumingMemoryBound(to: Float.self), emit.assumingMemoryBound(to: Float.self),
                            out.assumingMemoryBound(to: Float.self))
        while s < count {
            fo[s] = logSumExp3(fa[s], fb[s], fc[s] + fm[s]) + fe[s]
            s += 1
        }
    }

    /// `out[s] = exp(alpha[s] + beta[s] + nll - emit[s])`: the probability that a path through
    /// state s at this frame produced the target (0 where α or β is -inf).
    @inline(__always)
    static func ctcOccupancies<T: FloatElement>(_ alpha: UnsafePointer<T>, _ beta: UnsafePointer<T>, _ emit: UnsafePointer<T>,
                                                _ nll: T, _ out: UnsafeMutablePointer<T>, _ count: Int) {
        if T.self == Float.self {
            let (a, b, e) = (UnsafeRawPointer(alpha), UnsafeRawPointer(beta), UnsafeRawPointer(emit))
            let o = UnsafeMutableRawPointer(out)
            let shift = SIMD8<Float>(repeating: unsafeBitCast(nll, to: Float.self))
            var s = 0
            while s + 8 <= count {
                let offset = s * 4
                let v = a.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
                    + b.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self) + shift
                    - e.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
                o.storeBytes(of: FastMath.exp8(v), toByteOffset: offset, as: SIMD8<Float>.self)
                s += 8
            }
            while s < count { out[s] = T.exp(alpha[s] + beta[s] + nll - emit[s]); s += 1 }
            return
        }
        for s in 0..<count { out[s] = T.exp(alpha[s] + beta[s] + nll - emit[s]) }
    }
}

extension FastMath {
    /// Natural log on eight lanes for positive finite x (Cephes `logf`: x = m·2^e with
    /// m in [√½, √2), a degree-9 polynomial in m - 1), about 1 ulp; x = 0 gives a large
    /// negative value, not -inf, so callers mask that case.
    @inline(__always)
    static func log8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let bits = unsafeBitCast(x, to: SIMD8<Int32>.self)
        var e = SIMD8<Float>((bits &>> 23) &- 126)
        // Mantissa in [0.5, 1).
        var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F00_0000, to: SIMD8<Float>.self)
        let small = m .< 0.707106781186547524
        e.replace(with: e - 1, where: small)
        m = m.replacing(with: m + m, where: small) - 1
        let z = m * m
        var y = SIMD8<Float>(repeating: 7.0376836292e-2)
        y = y * m - 1.1514610310e-1
        y = y * m + 1.1676998740e-1
        y = y * m - 1.2420140846e-1
        y = y * m + 1.4249322787e-1
        y = y * m - 1.6668057665e-1
        y = y * m + 2.0000714765e-1
        y = y * m - 2.4999993993e-1
        y = y * m + 3.3333331174e-1
        y = y * m * z
        y += e * -2.12194440e-4
        y -= z * 0.5
        return m + y + e * 0.693359375
    }
}

extension Kernels {
    /// Per-sample negative log-likelihoods `[N]` of contiguous `logProbs` `[T, N, C]` and the forward
    /// variables: of every frame with `keepAlpha` (for the backward pass), else of two rolling rows.
    static func ctcForward(_ logProbs: Tensor, _ batch: CTCBatch, keepAlpha: Bool) -> (nll: Tensor, alpha: Tensor) {
        let rows = keepAlpha ? batch.time : 2
        let alpha = Tensor(uninitializedShape: [batch.batch, rows, batch.rowStride], dtype: logProbs.dtype)
        let nll = Tensor(uninitializedShape: [batch.batch], dtype: logProbs.dtype)
        func forward<T: FloatElement>(_: T.Type) {
            ctcForward(logProbs.elementPointer(T.self), batch, alpha: alpha.elementPointer(T.self), alphaRows: rows,
                       nll: nll.elementPointer(T.self))
        }
        withExtendedLifetime(logProbs) { if logProbs.dtype == .float64 { forward(Double.self) } else { forward(Float.self) } }
        return (nll, alpha)
    }

    /// The gradient of the CTC loss with respect to its log-probabilities for the loss gradient `g`.
    static func ctcBackward(_ state: CTCState, gradOut g: Tensor) -> Tensor {
        let upstream = g.toDoubleArray(), n = state.batch.batch, dtype = state.logProbs.dtype
        let scale: [Double]
        switch state.reduction {
        case .none: scale = upstream
        case .sum: scale = [Double](repeating: upstream[0], count: n)
        case .mean: scale = state.divisors.map { upstream[0] / ($0 * Double(n)) }
        }
        let grad = Tensor(uninitializedShape: state.logProbs.shape, dtype: dtype)
        scale.withUnsafeBufferPointer { sp in
            func backward<T: FloatElement>(_: T.Type) {
                ctcBackward(state.logProbs.elementPointer(T.self), state.batch, alpha: state.alpha.elementPointer(T.self),
                            nll: state.nll.elementPointer(T.self), scale: sp.baseAddress!,
                            zeroInfinity: state.zeroInfinity, grad: grad.elementPointer(T.self))
            }
            withExtendedLifetime(state) { if dtype == .float64 { backward(Double.self) } else { backward(Float.self) } }
        }
        return grad
    }
}
