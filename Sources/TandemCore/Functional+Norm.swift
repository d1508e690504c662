/// Functional normalisation layers (like `torch.nn.functional`): batch norm, layer norm,
/// RMS norm and group norm. Each runs a fused kernel (Kernels/NormKernels.swift) and records
/// a hand-written backward pass. float32 and float64.
extension Tensor {
    // MARK: - Batch norm

    /// Batch normalisation (`F.batch_norm`).
    ///
    /// - Parameters:
    ///   - x: `[N, C]` or `[N, C, *]`; statistics are taken over every axis but 1.
    ///   - runningMean, runningVar: `[C]` buffers of x's dtype, or nil. In training mode they
    ///     are replaced by `(1 - momentum)·old + momentum·batch` (the variance term uses the
    ///     UNBIASED batch variance, as PyTorch does). In eval mode they are required and used
    ///     for normalisation. They never receive gradients.
    ///   - weight, bias: optional `[C]` affine parameters (γ, β).
    ///   - training: normalise with the batch statistics (biased variance) when true.
    /// - Returns: a tensor shaped like `x`. Gradients flow to `x`, `weight` and `bias`.
    /// - Throws: `TensorError` for a rank below 2, non-float dtypes, parameter shapes other
    ///   than `[C]`, a missing running statistic in eval mode, or a single value per channel
    ///   in training mode.
    public static func batchNorm(
        _ x: Tensor, runningMean: inout Tensor?, runningVar: inout Tensor?, weight: Tensor?, bias: Tensor?,
        training: Bool, momentum: Double = 0.1, eps: Double = 1e-5
    ) throws -> Tensor {
        let op = "batchNorm"
        if x.dtype.isLowPrecision {  // statistics stay float32 (autocast fp32 list)
            return try batchNorm(x.widened(), runningMean: &runningMean, runningVar: &runningVar, weight: weight, bias: bias,
                                 training: training, momentum: momentum, eps: eps)
        }
        try Kernels.requireFloat(x, op)
        guard x.rank >= 2 else {
            throw TensorError.shapeMismatch(op: op, message: "input must be [N, C] or [N, C, *], got \(x.shape)")
        }
        let n = x.shape[0], c = x.shape[1], s = Shape.count(Array(x.shape.dropFirst(2)))
        for (name, t) in [("weight", weight), ("bias", bias), ("runningMean", runningMean), ("runningVar", runningVar)] {
            guard let t else { continue }
            guard t.shape == [c] else {
                throw TensorError.shapeMismatch(op: op, message: "\(name) has shape \(t.shape); expected [\(c)] for input \(x.shape)")
            }
            guard t.dtype == x.dtype else {
                throw TensorError.dtypeMismatch(op: op, message: "\(name) is \(t.dtype) but input is \(x.dtype)")
            }
        }
        guard eps >= 0 else { throw TensorError.invalidArgument(op: op, message: "eps must be non-negative, got \(eps)") }
        let m = n * s
        // Runs of at least 8 elements per (sample, channel) use the kernels fused per channel;
        // shorter runs ([N, C], tiny spatial sizes) walk rows with channels innermost.
        let fused = s >= 8
        let xc = x.contiguousStorage()
        let w = weight?.toDoubleArray() ?? [Double](repeating: 1, count: c)
        let b = bias?.toDoubleArray() ?? [Double](repeating: 0, count: c)
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        let center: [Double], invstd: [Double]
        if training {
            guard m > 1 else {
                throw TensorError.invalidArgument(op: op, message: "expected more than 1 value per channel when training, got input \(x.shape)")
            }
            var mean = [Double](repeating: 0, count: c), sq = [Double](repeating: 0, count: c)
            mean.withUnsafeMutableBufferPointer { mb in
                sq.withUnsafeMutableBufferPointer { sb in
                    func run<T: FloatElement>(_: T.Type) {
                        if fused {
                            Kernels.batchNormTrainingForward(xc.elementPointer(T.self), out.elementPointer(T.self), n: n, c: c, s: s,
                                                             eps: eps, weight: w, bias: b,
                                                             mean: mb.baseAddress!, squaredDeviation: sb.baseAddress!)
                        } else {
                            Kernels.channelStatistics(xc.elementPointer(T.self), n: n, c: c, s: s,
                                                      mean: mb.baseAddress!, squaredDeviation: sb.baseAddress!)
                        }
                    }
                    if x.dtype == .float64 { run(Double.self) } else { run(Float.self) }
                }
            }
            center = mean
            invstd = sq.map { 1 / ($0 / Double(m) + eps).squareRoot() }
            if let old = runningMean { runningMean = updatedRunningStatistic(old, batch: mean, momentum: momentum) }
            if let old = runningVar {
                runningVar = updatedRunningStatistic(old, batch: sq.map { $0 / Double(m) }, momentum: momentum, count: m)
            }
        } else {
            guard let rm = runningMean, let rv = runningVar else {
                throw TensorError.invalidArgument(op: op, message: "runningMean and runningVar are required in eval mode (training: false)")
            }
            center = rm.toDoubleArray()
            invstd = rv.toDoubleArray().map { 1 / ($0 + eps).squareRoot() }
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
                Kernels.channelAffine(xc.elementPointer(T.self), out.elementPointer(T.self), n: n, c: c, s: s,
                                      center: centerT, scale: scale, shift: shift)
            }
            if x.dtype == .float64 { forward(Double.self) } else { forward(Float.self) }
        }

        var inputs: [Tensor] = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let hasWeight = weight != nil, hasBias = bias != nil
        let dtype = x.dtype, shape = x.shape
        let xData = xc.detach()
        return Tensor.record(op, out, inputs: inputs) { g in
            let gc = g.contiguousStorage()
            let dx = Tensor(uninitializedShape: shape, dtype: dtype)
            var sumG = [Double](repeating: 0, count: c), sumGX = [Double](repeating: 0, count: c)
            sumG.withUnsafeMutableBufferPointer { ab in
                sumGX.withUnsafeMutableBufferPointer { bb in
                    func run<T: FloatElement>(_: T.Type) {
                        // `gc` (a copy when `g` is strided) may be unused after its pointer was taken.
                        withExtendedLifetime(gc) {
                            if fused {
                                Kernels.batchNormBackward(gc.elementPointer(T.self), xData.elementPointer(T.self), dx.elementPointer(T.self),
                                                          n: n, c: c, s: s, training: training, center: center, invstd: invstd,
                                                          weight: w, sumG: ab.baseAddress!, sumGX: bb.baseAddress!)
                            } else {
                                Kernels.channelGradSums(gc.elementPointer(T.self), xData.elementPointer(T.self), n: n, c: c, s: s,
                                                        mean: center, sumG: ab.baseAddress!, sumGX: bb.baseAddress!)
                            }
                        }
                    }
                    if dtype == .float64 { run(Double.self) } else { run(Float.self) }
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
                    withExtendedLifetime(gc) {
                        Kernels.channelLinearCombination(gc.elementPointer(T.self), xData.elementPointer(T.self), dx.elementPointer(T.self),
                                                         n: n, c: c, s: s, center: centerT, k1: k1, k2: k2, k3: k3)
                    }
                }
                if dtype == .float64 { backward(Double.self) } else { backward(Float.self) }
            }
            var grads: [Tensor?] = [dx]
            if hasWeight { grads.append(Tensor((0..<c).map { sumGX[$0] * invstd[$0] }, shape: [c], dtype: dtype)) }
            if hasBias { grads.append(Tensor(sumG, shape: [c], dtype: dtype)) }
            return grads
        }
    }

    // MARK: - Row norms

    /// Layer normalisation (`F.layer_norm`): normalises over the trailing dimensions given by
    /// `normalizedShape` with the biased variance, then applies the optional elementwise affine.
    ///
    /// - Parameters:
    ///   - x: `[..., *normalizedShape]`.
    ///   - normalizedShape: the trailing dimensions to normalise over (non-empty).
    ///   - weight, bias: optional, shaped `normalizedShape`.
    /// - Returns: a tensor shaped like `x`; gradients flow to `x`, `weight` and `bias`.
    /// - Throws: `TensorError` when `normalizedShape` does not match x's trailing dimensions,
    ///   when weight/bias have another shape or dtype, or for non-float input.
    public static func layerNorm(_ x: Tensor, normalizedShape: [Int], weight: Tensor?, bias: Tensor?,
                                 eps: Double = 1e-5) throws -> Tensor {
        if x.dtype.isLowPrecision {
            return try layerNorm(x.widened(), normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps)
        }
        try checkTrailing(x, normalizedShape, op: "layerNorm")
        try checkParameter(weight, "weight", normalizedShape, x, op: "layerNorm")
        try checkParameter(bias, "bias", normalizedShape, x, op: "layerNorm")
        let k = Shape.count(normalizedShape)
        let layout = Kernels.RowNormLayout(rows: x.count / Swift.max(k, 1), groups: 1, cg: k, s: 1)
        return try rowNorm(x, layout: layout, centered: true, weight: weight, bias: bias, eps: eps, op: "layerNorm")
    }

    /// RMS normalisation (`F.rms_norm`): `x / sqrt(mean(x², normalized dims) + eps) * weight`.
    ///
    /// - Parameters:
    ///   - x: `[..., *normalizedShape]`.
    ///   - normalizedShape: the trailing dimensions to normalise over (non-empty).
    ///   - weight: optional, shaped `normalizedShape`.
    /// - Returns: a tensor shaped like `x`; gradients flow to `x` and `weight`.
    /// - Throws: `TensorError` when `normalizedShape` does not match x's trailing dimensions,
    ///   when weight has another shape or dtype, or for non-float input.
    public static func rmsNorm(_ x: Tensor, normalizedShape: [Int], weight: Tensor?, eps: Double = 1e-6) throws -> Tensor {
        if x.dtype.isLowPrecision { return try rmsNorm(x.widened(), normalizedShape: normalizedShape, weight: weight, eps: eps) }
        try checkTrailing(x, normalizedShape, op: "rmsNorm")
        try checkParameter(weight, "weight", normalizedShape, x, op: "rmsNorm")
        let k = Shape.count(normalizedShape)
        let layout = Kernels.RowNormLayout(rows: x.count / Swift.max(k, 1), groups: 1, cg: k, s: 1)
        return try rowNorm(x, layout: layout, centered: false, weight: weight, bias: nil, eps: eps, op: "rmsNorm")
    }

    /// Group normalisation (`F.group_norm`): the C channels are split into `numGroups`
    /// groups; each (sample, group) is normalised over its channels and spatial positions
    /// (biased variance), then the optional per-channel affine is applied.
    ///
    /// - Parameters:
    ///   - x: `[N, C, *]` with C divisible by `numGroups`.
    ///   - weight, bias: optional `[C]`.
    /// - Returns: a tensor shaped like `x`; gradients flow to `x`, `weight` and `bias`.
    /// - Throws: `TensorError` for a rank below 2, C not divisible by `numGroups`, parameter
    ///   shapes other than `[C]`, or non-float input.
    public static func groupNorm(_ x: Tensor, numGroups: Int, weight: Tensor?, bias: Tensor?,
                                 eps: Double = 1e-5) throws -> Tensor {
        let op = "groupNorm"
        if x.dtype.isLowPrecision { return try groupNorm(x.widened(), numGroups: numGroups, weight: weight, bias: bias, eps: eps) }
        try Kernels.requireFloat(x, op)
        guard x.rank >= 2 else {
            throw TensorError.shapeMismatch(op: op, message: "input must be [N, C, *], got \(x.shape)")
        }
        let c = x.shape[1]
        guard numGroups > 0, c % numGroups == 0 else {
            throw TensorError.invalidArgument(op: op, message: "\(c) channels of input \(x.shape) cannot be split into \(numGroups) groups")
        }
        try checkParameter(weight, "weight", [c], x, op: op)
        try checkParameter(bias, "bias", [c], x, op: op)
        let s = Shape.count(Array(x.shape.dropFirst(2)))
        let layout = Kernels.RowNormLayout(rows: x.shape[0] * numGroups, groups: numGroups, cg: c / numGroups, s: s)
        return try rowNorm(x, layout: layout, centered: true, weight: weight, bias: bias, eps: eps, op: op)
    }

    private static func checkTrailing(_ x: Tensor, _ normalizedShape: [Int], op: String) throws {
        try Kernels.requireFloat(x, op)
        guard !normalizedShape.isEmpty, normalizedShape.count <= x.rank,
              Array(x.shape.suffix(normalizedShape.count)) == normalizedShape else {
            throw TensorError.shapeMismatch(
                op: op, message: "normalizedShape \(normalizedShape) does not match the trailing dimensions of input \(x.shape)")
        }
    }

    private static func checkParameter(_ p: Tensor?, _ name: String, _ expected: [Int], _ x: Tensor, op: String) throws {
        guard let p else { return }
        guard p.shape == expected else {
            throw TensorError.shapeMismatch(op: op, message: "\(name) has shape \(p.shape); expected \(expected) for input \(x.shape)")
        }
        guard p.dtype == x.dtype else {
            throw TensorError.dtypeMismatch(op: op, message: "\(name) is \(p.dtype) but input is \(x.dtype)")
        }
    }

    /// Shared driver of layer, RMS and group norm.
    private static func rowNorm(_ x: Tensor, layout: Kernels.RowNormLayout, centered: Bool,
                                weight: Tensor?, bias: Tensor?, eps: Double, op: String) throws -> Tensor {
        guard eps >= 0 else { throw TensorError.invalidArgument(op: op, message: "eps must be non-negative, got \(eps)") }
        let xc = x.contiguousStorage()
        let wc = weight?.contiguousStorage(), bc = bias?.contiguousStorage()
        var mean = [Double](repeating: 0, count: layout.rows), rstd = [Double](repeating: 0, count: layout.rows)
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        mean.withUnsafeMutableBufferPointer { mb in
            rstd.withUnsafeMutableBufferPointer { rb in
                func run<T: FloatElement>(_: T.Type) {
                    Kernels.rowStatistics(xc.elementPointer(T.self), rows: layout.rows, k: layout.k, centered: centered, eps: eps,
                                          mean: mb.baseAddress!, rstd: rb.baseAddress!)
                    // `bc` (a copy when `bias` is strided) is not used after its pointer was taken.
                    withExtendedLifetime(bc) {
                        Kernels.rowNormForward(xc.elementPointer(T.self), out.elementPointer(T.self), layout: layout,
                                               mean: mb.baseAddress!, rstd: rb.baseAddress!,
                                               weight: wc.map { UnsafePointer($0.elementPointer(T.self)) },
                                               bias: bc.map { UnsafePointer($0.elementPointer(T.self)) })
                    }
                }
                if x.dtype == .float64 { run(Double.self) } else { run(Float.self) }
            }
        }
        var inputs: [Tensor] = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let dtype = x.dtype, shape = x.shape
        let xData = xc.detach(), wData = wc?.detach()
        let rowMean = mean, rowRstd = rstd
        let hasWeight = weight != nil, hasBias = bias != nil
        return Tensor.record(op, out, inputs: inputs) { g in
            let gc = g.contiguousStorage()
            let dx = Tensor(uninitializedShape: shape, dtype: dtype)
            let needParams = hasWeight || hasBias
            var dw = [Double](repeating: 0, count: needParams ? layout.params : 0)
            var db = [Double](repeating: 0, count: needParams ? layout.params : 0)
            rowMean.withUnsafeBufferPointer { mb in
                rowRstd.withUnsafeBufferPointer { rb in
                    dw.withUnsafeMutableBufferPointer { dwb in
                        db.withUnsafeMutableBufferPointer { dbb in
                            func run<T: FloatElement>(_: T.Type) {
                                // `gc` (a copy when `g` is strided) is not used after its pointer was taken.
                                withExtendedLifetime(gc) {
                                    Kernels.rowNormBackwardInput(gc.elementPointer(T.self), xData.elementPointer(T.self),
                                                                 dx.elementPointer(T.self), layout: layout, centered: centered,
                                                                 mean: mb.baseAddress!, rstd: rb.baseAddress!,
                                                                 weight: wData.map { UnsafePointer($0.elementPointer(T.self)) })
                                    if needParams {
                                        Kernels.rowNormBackwardParams(gc.elementPointer(T.self), xData.elementPointer(T.self),
                                                                      layout: layout, mean: mb.baseAddress!, rstd: rb.baseAddress!,
                                                                      dweight: dwb.baseAddress!, dbias: dbb.baseAddress!)
                                    }
                                }
                            }
                            if dtype == .float64 { run(Double.self) } else { run(Float.self) }
                        }
                    }
                }
            }
            var grads: [Tensor?] = [dx]
            if let weight { grads.append(Tensor(dw, shape: weight.shape, dtype: dtype)) }
            if let bias { grads.append(Tensor(db, shape: bias.shape, dtype: dtype)) }
            return grads
        }
    }
}

extension Tensor {
    /// Batch norm's running-statistics update, shared by `batchNorm`, the fused conv blocks and
    /// SyncBatchNorm: `(1 − momentum) · running + momentum · batch`, computed in Double and
    /// rounded once to `running`'s dtype. With `count` (the values per channel), `batch` is a
    /// biased variance and enters unbiased (`× count / (count − 1)`), as in PyTorch.
    /// `running` is `[C]`; `batch` has C values.
    public static func updatedRunningStatistic(_ running: Tensor, batch: [Double], momentum: Double, count: Int? = nil) -> Tensor {
        let correction = count.map { Double($0) / Double(Swift.max($0 - 1, 1)) } ?? 1
        let values = zip(running.toDoubleArray(), batch).map { (1 - momentum) * $0 + momentum * $1 * correction }
        return Tensor(values, shape: running.shape, dtype: running.dtype)
    }
}
