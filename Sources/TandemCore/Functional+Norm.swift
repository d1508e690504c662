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
        var mean = runningMean, variance = runningVar
        defer { (runningMean, runningVar) = (mean, variance) }
        return try Dispatch.run(.batchNorm, x) { x in
            try batchNormOperands(x, runningMean: &mean, runningVar: &variance, weight: weight, bias: bias,
                                  training: training, momentum: momentum, eps: eps)
        }
    }

    private static func batchNormOperands(
        _ x: Tensor, runningMean: inout Tensor?, runningVar: inout Tensor?, weight: Tensor?, bias: Tensor?,
        training: Bool, momentum: Double, eps: Double
    ) throws -> Tensor {
        let op = "batchNorm"
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
        guard !training || m > 1 else {
            throw TensorError.invalidArgument(op: op, message: "expected more than 1 value per channel when training, got input \(x.shape)")
        }
        guard training || (runningMean != nil && runningVar != nil) else {
            throw TensorError.invalidArgument(op: op, message: "runningMean and runningVar are required in eval mode (training: false)")
        }
        let running = training ? nil : (runningMean!.toDoubleArray(), runningVar!.toDoubleArray())
        let (out, state) = Kernels.batchNormForward(x.contiguousStorage(), weight: weight?.toDoubleArray(), bias: bias?.toDoubleArray(),
                                                    running: running, eps: eps)
        if training {
            if let old = runningMean { runningMean = updatedRunningStatistic(old, batch: state.center, momentum: momentum) }
            if let old = runningVar {
                runningVar = updatedRunningStatistic(old, batch: state.batchVariance, momentum: momentum, count: m)
            }
        }
        var inputs: [Tensor] = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return Dispatch.record(.batchNorm, out, inputs: inputs, state: state)
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
        try Dispatch.run(.layerNorm, x) { x in
            try checkTrailing(x, normalizedShape, op: "layerNorm")
            try checkParameter(weight, "weight", normalizedShape, x, op: "layerNorm")
            try checkParameter(bias, "bias", normalizedShape, x, op: "layerNorm")
            let k = Shape.count(normalizedShape)
            let layout = Kernels.RowNormLayout(rows: x.count / Swift.max(k, 1), groups: 1, cg: k, s: 1)
            return try rowNorm(x, layout: layout, centered: true, weight: weight, bias: bias, eps: eps, op: .layerNorm)
        }
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
        try Dispatch.run(.rmsNorm, x) { x in
            try checkTrailing(x, normalizedShape, op: "rmsNorm")
            try checkParameter(weight, "weight", normalizedShape, x, op: "rmsNorm")
            let k = Shape.count(normalizedShape)
            let layout = Kernels.RowNormLayout(rows: x.count / Swift.max(k, 1), groups: 1, cg: k, s: 1)
            return try rowNorm(x, layout: layout, centered: false, weight: weight, bias: nil, eps: eps, op: .rmsNorm)
        }
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
        try Dispatch.run(.groupNorm, x) { x in try groupNormOperand(x, numGroups: numGroups, weight: weight, bias: bias, eps: eps) }
    }

    private static func groupNormOperand(_ x: Tensor, numGroups: Int, weight: Tensor?, bias: Tensor?, eps: Double) throws -> Tensor {
        let op = "groupNorm"
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
        return try rowNorm(x, layout: layout, centered: true, weight: weight, bias: bias, eps: eps, op: .groupNorm)
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
                                weight: Tensor?, bias: Tensor?, eps: Double, op: Op) throws -> Tensor {
        guard eps >= 0 else { throw TensorError.invalidArgument(op: op.rawValue, message: "eps must be non-negative, got \(eps)") }
        let (out, state) = Kernels.rowNormForward(x.contiguousStorage(), layout: layout, centered: centered,
                                                  weight: weight?.contiguousStorage(), bias: bias?.contiguousStorage(), eps: eps)
        var inputs: [Tensor] = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return Dispatch.record(op, out, inputs: inputs, state: state)
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
