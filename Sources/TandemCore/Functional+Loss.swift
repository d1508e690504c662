/// How a loss reduces its per-element values.
public enum Reduction: Sendable {
    /// The mean (for class losses with `ignoreIndex`: over the non-ignored samples). Shape `[]`.
    case mean
    /// The sum. Shape `[]`.
    case sum
    /// No reduction: one loss per sample (class losses) or per element.
    case none
}

/// Functional losses (like `torch.nn.functional`). Class losses use a fused kernel
/// (Kernels/LossKernels.swift) with a hand-written backward pass.
extension Tensor {
    // MARK: - Class losses

    /// Cross entropy between logits and class indices (`F.cross_entropy`), with PyTorch's
    /// semantics: the fused log-softmax + NLL, `ignoreIndex` samples dropped from the loss and
    /// from the mean's denominator, and label smoothing
    /// `(1-ε)·nll + ε·mean_c(-log p_c)` (ignored samples drop out of both terms).
    ///
    /// - Parameters:
    ///   - logits: `[N, C]`, `[N, C, d1, ...]` or `[C]`; float32 or float64.
    ///   - target: int64 class indices `[N]`, `[N, d1, ...]` or `[]`, each in `0..<C` or equal to `ignoreIndex`.
    ///   - labelSmoothing: ε in [0, 1].
    /// - Returns: shape `[]` for `.mean`/`.sum`, the target's shape for `.none` (0 where ignored).
    ///   A mean over zero non-ignored samples is NaN, as in PyTorch. Gradients flow to `logits`.
    /// - Throws: `TensorError` for a non-int64 target, a target shape that does not match the
    ///   logits, a label out of range, or ε outside [0, 1].
    public static func crossEntropy(_ logits: Tensor, target: Tensor, reduction: Reduction = .mean,
                                    ignoreIndex: Int = -100, labelSmoothing: Double = 0) throws -> Tensor {
        try Dispatch.run(.crossEntropy, logits) { logits in
            guard labelSmoothing >= 0, labelSmoothing <= 1 else {
                throw TensorError.invalidArgument(op: "crossEntropy", message: "labelSmoothing must be in [0, 1], got \(labelSmoothing)")
            }
            let (rows, c) = try classRows(logits, target, ignoreIndex: ignoreIndex, op: "crossEntropy")
            // The softmax is kept for the backward pass only when a gradient will be asked for.
            let loss = Kernels.crossEntropyForward(rows, classes: c, labels: target.contiguousStorage(), ignoreIndex: ignoreIndex,
                                                   smoothing: labelSmoothing, keepProbabilities: GradMode.enabled && logits.requiresGrad)
            let out = reducedLoss(loss.perRow, reduction: reduction, kept: loss.kept, shape: target.shape, dtype: logits.dtype)
            return Dispatch.record(.crossEntropy, out, inputs: [logits],
                                   state: ClassLossState(kind: .crossEntropy(probabilities: loss.probabilities, smoothing: labelSmoothing),
                                                         labels: loss.labels, ignoreIndex: ignoreIndex, classes: c,
                                                         reduction: reduction, kept: loss.kept, inputShape: logits.shape))
        }
    }

    /// Negative log-likelihood of class indices (`F.nll_loss`): `-logProbs[n, target[n]]`.
    ///
    /// - Parameters:
    ///   - logProbs: `[N, C]`, `[N, C, d1, ...]` or `[C]` (usually a `logSoftmax(axis: 1)`).
    ///   - target: int64 class indices `[N]`, `[N, d1, ...]` or `[]`, each in `0..<C` or `ignoreIndex`.
    /// - Returns: shape `[]` for `.mean`/`.sum` (the mean is over non-ignored samples), the
    ///   target's shape for `.none`. Gradients flow to `logProbs`.
    /// - Throws: `TensorError` for a non-int64 target, mismatched shapes or a label out of range.
    public static func nllLoss(logProbs: Tensor, target: Tensor, reduction: Reduction = .mean,
                               ignoreIndex: Int = -100) throws -> Tensor {
        try Dispatch.run(.nllLoss, logProbs) { logProbs in
            let (rows, c) = try classRows(logProbs, target, ignoreIndex: ignoreIndex, op: "nllLoss")
            let loss = Kernels.nllForward(rows, classes: c, labels: target.contiguousStorage(), ignoreIndex: ignoreIndex)
            let out = reducedLoss(loss.perRow, reduction: reduction, kept: loss.kept, shape: target.shape, dtype: logProbs.dtype)
            return Dispatch.record(.nllLoss, out, inputs: [logProbs],
                                   state: ClassLossState(kind: .nll(rowsShape: rows.shape), labels: loss.labels, ignoreIndex: ignoreIndex,
                                                         classes: c, reduction: reduction, kept: loss.kept, inputShape: logProbs.shape))
        }
    }

    /// Validates a class loss's inputs and returns the input as contiguous `[rows, C]` data
    /// (class axis moved last) and C.
    private static func classRows(_ input: Tensor, _ target: Tensor, ignoreIndex: Int, op: String) throws -> (Tensor, Int) {
        try Kernels.requireFloat(input, op)
        guard target.dtype == .int64 else {
            throw TensorError.dtypeMismatch(
                op: op, message: "target must hold int64 class indices, got \(target.dtype) target \(target.shape) for input \(input.shape)")
        }
        guard input.rank >= 1 else {
            throw TensorError.shapeMismatch(op: op, message: "input must be [N, C], [N, C, d1, ...] or [C], got \(input.shape)")
        }
        let expected = input.rank == 1 ? [] : [input.shape[0]] + Array(input.shape.dropFirst(2))
        guard target.shape == expected else {
            throw TensorError.shapeMismatch(
                op: op, message: "target \(target.shape) does not fit input \(input.shape); expected target shape \(expected)")
        }
        let c = input.rank == 1 ? input.shape[0] : input.shape[1]
        if let bad = Kernels.firstInvalidLabel(target, classes: c, ignoreIndex: Int64(ignoreIndex)) {
            throw TensorError.invalidArgument(
                op: op, message: "target label \(bad) is out of range for \(c) classes (valid: 0..<\(c) or ignoreIndex \(ignoreIndex))")
        }
        let rows = input.rank <= 2 ? input.detach().contiguousStorage() : try input.movedToLast(1)
        return (rows, c)
    }

    /// The loss tensor from per-sample losses.
    private static func reducedLoss(_ perRow: [Double], reduction: Reduction, kept: Int, shape: [Int], dtype: DType) -> Tensor {
        switch reduction {
        case .none: return Tensor(perRow, shape: shape, dtype: dtype)
        case .sum: return Tensor.scalar(perRow.reduce(0, +), dtype: dtype)
        case .mean: return Tensor.scalar(perRow.reduce(0, +) / Double(kept), dtype: dtype)
        }
    }

    // MARK: - Regression losses

    /// Mean squared error (`F.mse_loss`): `(input - target)²`, reduced.
    ///
    /// - Parameters: `input` and `target` of the same shape and float dtype.
    /// - Returns: shape `[]` for `.mean`/`.sum`, the input's shape for `.none`. Gradients flow
    ///   to both arguments.
    /// - Throws: `TensorError` when the shapes or dtypes differ.
    public static func mseLoss(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean) throws -> Tensor {
        try Dispatch.run(.mseLoss, [input, target]) { operands in
            try meanSquaredError(operands[0]!, operands[1]!, reduction: reduction)
        }
    }

    private static func meanSquaredError(_ input: Tensor, _ target: Tensor, reduction: Reduction) throws -> Tensor {
        try Kernels.requireFloat(input, "mseLoss")
        guard input.shape == target.shape else {
            throw TensorError.shapeMismatch(op: "mseLoss", message: "input \(input.shape) and target \(target.shape) must have the same shape")
        }
        let diff = try input - target
        return try reduced(diff * diff, reduction)
    }

    /// Binary cross entropy on logits (`F.binary_cross_entropy_with_logits`), in the stable form
    /// `(1 - y)·x + w·softplus(-x)` with `w = 1 + (posWeight - 1)·y` (w = 1 without posWeight).
    ///
    /// - Parameters:
    ///   - logits: any shape, float.
    ///   - target: probabilities in [0, 1], shaped like `logits`.
    ///   - posWeight: optional weight of positive examples, broadcast against `logits`
    ///     (typically `[C]` for `[..., C]` logits).
    /// - Returns: shape `[]` for `.mean`/`.sum`, the logits' shape for `.none`. Gradients flow
    ///   to `logits`, `target` and `posWeight`.
    /// - Throws: `TensorError` when target's shape differs, posWeight does not broadcast, or
    ///   the dtypes differ.
    public static func binaryCrossEntropyWithLogits(_ logits: Tensor, _ target: Tensor, reduction: Reduction = .mean,
                                                    posWeight: Tensor? = nil) throws -> Tensor {
        try Dispatch.run(.binaryCrossEntropyWithLogits, [logits, target]) { operands in
            try binaryCrossEntropy(logits: operands[0]!, operands[1]!, reduction: reduction, posWeight: posWeight)
        }
    }

    private static func binaryCrossEntropy(logits: Tensor, _ target: Tensor, reduction: Reduction, posWeight: Tensor?) throws -> Tensor {
        let op = "binaryCrossEntropyWithLogits"
        try Kernels.requireFloat(logits, op)
        guard logits.shape == target.shape else {
            throw TensorError.shapeMismatch(op: op, message: "logits \(logits.shape) and target \(target.shape) must have the same shape")
        }
        let softplusNeg = try (-logits).softplus()
        var loss = try (1 - target) * logits
        if let posWeight {
            let broadcast = try Shape.broadcast(logits.shape, posWeight.shape, op: op)
            guard broadcast == logits.shape else {
                throw TensorError.shapeMismatch(op: op, message: "posWeight \(posWeight.shape) does not broadcast to logits \(logits.shape)")
            }
            let weight = try (posWeight - 1) * target + 1
            loss = try loss + weight * softplusNeg
        } else {
            loss = try loss + softplusNeg
        }
        return try reduced(loss, reduction)
    }

    private static func reduced(_ t: Tensor, _ reduction: Reduction) throws -> Tensor {
        switch reduction {
        case .mean: return try t.mean()
        case .sum: return try t.sum()
        case .none: return t
        }
    }
}
