/// Batch normalisation over `[N, C, *]` on contiguous float32/float64 buffers: statistics and the
/// affine in Double per channel, fused per channel when each (sample, channel) run has at least 8
/// elements; shorter runs ([N, C], tiny spatial sizes) walk rows with channels innermost.
extension Kernels {
    /// Normalises contiguous `x` with its batch statistics (`running == nil`) or with the running
    /// (mean, variance); `weight`, `bias` `[C]` or nil. Returns the output and what the backward
    /// pass needs.
    static func batchNormForward(_ x: Tensor, weight: [Double]?, bias: [Double]?, running: ([Double], [Double])?,
                                 eps: Double) -> (Tensor, BatchNormState) {
        let n = x.shape[0], c = x.shape[1], s = Shape.count(Array(x.shape.dropFirst(2)))
        let m = n * s
        let training = running == nil
        let fused = s >= 8
        let w = weight ?? [Double](repeating: 1, count: c)
        let b = bias ?? [Double](repeating: 0, count: c)
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        let center: [Double], invstd: [Double], batchVariance: [Double]
        if let (runningMean, runningVar) = running {
            center = runningMean
            invstd = runningVar.map { 1 / ($0 + eps).squareRoot() }
            batchVariance = []
        } else {
            var mean = [Double](repeating: 0, count: c), sq = [Double](repeating: 0, count: c)
            mean.withUnsafeMutableBufferPointer { mb in
                sq.withUnsafeMutableBufferPointer { sb in
                    func run<T: FloatElement>(_: T.Type) {
                        if fused {
                            batchNormTrainingForward(x.elementPointer(T.self), out.elementPointer(T.self), n: n, c: c, s: s,
                                                     eps: eps, weight: w, bias: b, mean: mb.baseAddress!, squaredDeviation: sb.baseAddress!)
                        } else {
                            channelStatistics(x.elementPointer(T.self), n: n, c: c, s: s,
                                              mean: mb.baseAddress!, squaredDeviation: sb.baseAddress!)
                        }
                    }
                    withExtendedLifetime(x) { if x.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
                }
            }
            center = mean
            batchVariance = sq.map { $0 / Double(m) }
            invstd = batchVariance.map { 1 / ($0 + eps).squareRoot() }
        }
        if !(training && fused) {
            func forward<T: FloatElement>(_: T.Type) {
                // (x - μ')·a + (b + (μ' - μ)·a) with μ' = T(μ), so the rounding of μ cancels.
                var centerT = [T](), scale = [T](), shift = [T]()
                for ch in 0..<c {
                    let cT = T(center[ch])
                    let a: Double = w[ch] * invstd[ch]
                    let correction: Double = (cT.doubleValue - center[ch]) * a
                    centerT.append(cT)
                    scale.append(T(a))
                    shift.append(T(b[ch] + correction))
                }
                channelAffine(x.elementPointer(T.self), out.elementPointer(T.self), n: n, c: c, s: s,
                              center: centerT, scale: scale, shift: shift)
            }
            withExtendedLifetime(x) { if x.dtype == .float64 { forward(Double.self) } else { forward(Float.self) } }
        }
        let state = BatchNormState(x: x.detach(), training: training, fused: fused, center: center, invstd: invstd,
                                   batchVariance: batchVariance, weight: w, hasWeight: weight != nil, hasBias: bias != nil)
        return (out, state)
    }

    /// dx, and dweight and dbias where the forward pass had them, for the output gradient `g`.
    static func batchNormBackward(_ state: BatchNormState, gradOut g: Tensor) -> [Tensor?] {
        let x = state.x, dtype = x.dtype
        let n = x.shape[0], c = x.shape[1], s = Shape.count(Array(x.shape.dropFirst(2)))
        let m = n * s
        let (center, invstd, w, training, fused) = (state.center, state.invstd, state.weight, state.training, state.fused)
        let gc = g.contiguousStorage()
        let dx = Tensor(uninitializedShape: x.shape, dtype: dtype)
        var sumG = [Double](repeating: 0, count: c), sumGX = [Double](repeating: 0, count: c)
        sumG.withUnsafeMutableBufferPointer { ab in
            sumGX.withUnsafeMutableBufferPointer { bb in
                func run<T: FloatElement>(_: T.Type) {
                    if fused {
                        batchNormBackward(gc.elementPointer(T.self), x.elementPointer(T.self), dx.elementPointer(T.self),
                                          n: n, c: c, s: s, training: training, center: center, invstd: invstd,
                                          weight: w, sumG: ab.baseAddress!, sumGX: bb.baseAddress!)
                    } else {
                        channelGradSums(gc.elementPointer(T.self), x.elementPointer(T.self), n: n, c: c, s: s,
                                        mean: center, sumG: ab.baseAddress!, sumGX: bb.baseAddress!)
                    }
                }
                withExtendedLifetime((gc, x)) { if dtype == .float64 { run(Double.self) } else { run(Float.self) } }
            }
        }
        if !fused {
            func backward<T: FloatElement>(_: T.Type) {
                let md = Double(m)
                var centerT = [T](), k1 = [T](), k2 = [T](), k3 = [T]()
                for ch in 0..<c {
                    let cT = T(center[ch])
                    let a = w[ch] * invstd[ch]
                    centerT.append(cT)
                    k1.append(T(a))
                    if training {
                        // dx = a·(g - Σg/M - x̂·Σ(g·x̂)/M), x̂ = (x - μ)·invstd.
                        let slope = -a * invstd[ch] * invstd[ch] * sumGX[ch] / md
                        k2.append(T(slope))
                        k3.append(T(-a * sumG[ch] / md + slope * (cT.doubleValue - center[ch])))
                    } else {
                        k2.append(0)
                        k3.append(0)
                    }
                }
                channelLinearCombination(gc.elementPointer(T.self), x.elementPointer(T.self), dx.elementPointer(T.self),
                                         n: n, c: c, s: s, center: centerT, k1: k1, k2: k2, k3: k3)
            }
            withExtendedLifetime((gc, x)) { if dtype == .float64 { backward(Double.self) } else { backward(Float.self) } }
        }
        var grads: [Tensor?] = [dx]
        if state.hasWeight { grads.append(Tensor((0..<c).map { sumGX[$0] * invstd[$0] }, shape: [c], dtype: dtype)) }
        if state.hasBias { grads.append(Tensor(sumG, shape: [c], dtype: dtype)) }
        return grads
    }
}

/// What batch norm keeps for its gradient.
struct BatchNormState: @unchecked Sendable {
    /// The contiguous input.
    let x: Tensor
    let training: Bool, fused: Bool
    /// Per channel: the mean normalised with (batch or running), 1/√(var + eps), the biased batch
    /// variance (training only), the weight (1 without one).
    let center: [Double], invstd: [Double], batchVariance: [Double], weight: [Double]
    let hasWeight: Bool, hasBias: Bool
}
