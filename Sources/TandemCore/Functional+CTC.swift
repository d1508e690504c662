/// Connectionist temporal classification loss (Graves et al., 2006), like `F.ctc_loss`.
/// The forward–backward recursions and the gradient are fused kernels
/// (Kernels/CTCKernels.swift) with a hand-written backward pass.
extension Tensor {
    /// The CTC loss: the negative log-likelihood of each target under all alignments of the
    /// input frames, computed in log space by the forward–backward algorithm, with PyTorch's
    /// conventions.
    ///
    /// - Parameters:
    ///   - logProbs: `[T, N, C]` log-probabilities (usually `logSoftmax(axis: 2)`), time-major;
    ///     float32 or float64. Unbatched `[T, C]` with targets `[S]` and `[1]` lengths is a batch of one
    ///     (`.none` then gives `[]`).
    ///   - targets: integer labels, either padded `[N, S]` (entries past each target length are
    ///     ignored) or the targets concatenated `[sum(targetLengths)]`. Labels lie in `0..<C`
    ///     and are never `blank`.
    ///   - inputLengths: integer `[N]`, frames used per sample, each in `0...T`.
    ///   - targetLengths: integer `[N]`, each `>= 0` (and `<= S` for padded targets).
    ///   - blank: the blank class, in `0..<C`.
    ///   - reduction: `.none` gives `[N]` losses; `.sum` their sum; `.mean` divides each loss by
    ///     its target length (clamped to at least 1) and averages over the batch (both `[]`).
    ///   - zeroInfinity: replaces infinite losses (impossible alignments: too few frames for
    ///     the target and its repeats) and their gradients by 0. Without it they are +inf, and
    ///     their gradients NaN (as in PyTorch).
    /// - Returns: the loss, in the dtype of `logProbs`. Gradients flow to `logProbs` with
    ///   PyTorch's analytic formula `exp(lp) - γ` (γ the state occupancies), which assumes
    ///   normalised log-probabilities: through `logSoftmax` it is the exact gradient
    ///   `softmax - γ` with respect to the logits. Frames at or past an input length get 0.
    /// - Throws: `TensorError` for a wrong rank or dtype, lengths that do not match the batch
    ///   or the targets, lengths out of range, or labels out of range or equal to `blank`.
    public static func ctcLoss(logProbs: Tensor, targets: Tensor, inputLengths: Tensor, targetLengths: Tensor,
                               blank: Int = 0, reduction: Reduction = .mean, zeroInfinity: Bool = false) throws -> Tensor {
        try ctcLoss(logProbs: logProbs, targets: targets, inputLengths: try ctcLengths(inputLengths, "inputLengths"),
                    targetLengths: try ctcLengths(targetLengths, "targetLengths"), blank: blank,
                    reduction: reduction, zeroInfinity: zeroInfinity)
    }

    /// `ctcLoss` with the lengths given as arrays (`[N]` each); see the tensor version for the
    /// shape contract: `logProbs [T, N, C]`, `targets [N, S]` or `[sum(targetLengths)]` →
    /// `[N]` (`.none`) or `[]`.
    /// Unbatched input, as in PyTorch: `logProbs [T, C]` with `targets [S]` and one length each
    /// is the batch of one `[T, 1, C]`, `[1, S]`; `.none` then gives shape `[]`.
    public static func ctcLoss(logProbs: Tensor, targets: Tensor, inputLengths: [Int], targetLengths: [Int],
                               blank: Int = 0, reduction: Reduction = .mean, zeroInfinity: Bool = false) throws -> Tensor {
        if logProbs.rank == 2 {
            guard targets.rank == 1 else {
                throw TensorError.shapeMismatch(op: "ctcLoss", message: "unbatched logProbs \(logProbs.shape) need targets [S], got \(targets.shape)")
            }
            let loss = try ctcLoss(logProbs: logProbs.unsqueeze(1), targets: targets.unsqueeze(0), inputLengths: inputLengths,
                                   targetLengths: targetLengths, blank: blank, reduction: reduction, zeroInfinity: zeroInfinity)
            return reduction == .none ? try loss.reshape([]) : loss
        }
        return try Dispatch.run(.ctcLoss, logProbs) { logProbs in
            let batch = try ctcBatch(logProbs, targets, inputLengths, targetLengths, blank: blank)
            let dtype = logProbs.dtype
            let lp = logProbs.detach().contiguousStorage()
            // With a graph the forward variables of every frame are kept for the backward pass.
            let needsGrad = GradMode.enabled && logProbs.requiresGrad
            let (nll, alpha) = Kernels.ctcForward(lp, batch, keepAlpha: needsGrad)
            var losses = nll.toDoubleArray()
            if zeroInfinity { losses = losses.map { $0 == .infinity ? 0 : $0 } }
            let n = batch.batch
            let divisors = batch.targetLengths.map { Double(Swift.max($0, 1)) }
            let out: Tensor
            switch reduction {
            case .none: out = Tensor(losses, shape: [n], dtype: dtype)
            case .sum: out = Tensor.scalar(losses.reduce(0, +), dtype: dtype)
            case .mean: out = Tensor.scalar(zip(losses, divisors).reduce(0) { $0 + $1.0 / $1.1 } / Double(n), dtype: dtype)
            }
            return Dispatch.record(.ctcLoss, out, inputs: [logProbs],
                                   state: CTCState(logProbs: lp, batch: batch, alpha: alpha, nll: nll, reduction: reduction,
                                                   divisors: divisors, zeroInfinity: zeroInfinity))
        }
    }

    /// An integer `[N]` tensor of lengths as an array.
    private static func ctcLengths(_ lengths: Tensor, _ name: String) throws -> [Int] {
        guard !lengths.dtype.isFloatingPoint, lengths.dtype != .bool else {
            throw TensorError.dtypeMismatch(op: "ctcLoss", message: "\(name) must be an integer tensor, got \(lengths.dtype)")
        }
        guard lengths.rank == 1 else {
            throw TensorError.shapeMismatch(op: "ctcLoss", message: "\(name) must be [N], got \(lengths.shape)")
        }
        return lengths.toIntArray()
    }

    /// Validates the inputs of `ctcLoss` and flattens the targets.
    static func ctcBatch(_ logProbs: Tensor, _ targets: Tensor, _ inputLengths: [Int], _ targetLengths: [Int],
                         blank: Int) throws -> Kernels.CTCBatch {
        let op = "ctcLoss"
        try Kernels.requireFloat(logProbs, op)
        guard logProbs.rank == 3 else {
            throw TensorError.shapeMismatch(op: op, message: "logProbs must be [T, N, C] (time-major) or [T, C], got \(logProbs.shape)")
        }
        let (time, n, c) = (logProbs.shape[0], logProbs.shape[1], logProbs.shape[2])
        guard blank >= 0, blank < c else {
            throw TensorError.invalidArgument(op: op, message: "blank \(blank) is not a class of C = \(c)")
        }
        guard !targets.dtype.isFloatingPoint, targets.dtype != .bool else {
            throw TensorError.dtypeMismatch(op: op, message: "targets must hold integer labels, got \(targets.dtype)")
        }
        guard inputLengths.count == n, targetLengths.count == n else {
            throw TensorError.shapeMismatch(
                op: op, message: "inputLengths (\(inputLengths.count)) and targetLengths (\(targetLengths.count)) must have N = \(n) entries")
        }
        if let bad = inputLengths.firstIndex(where: { $0 < 0 || $0 > time }) {
            throw TensorError.invalidArgument(op: op, message: "inputLengths[\(bad)] = \(inputLengths[bad]) is outside 0...\(time) (T)")
        }
        if let bad = targetLengths.firstIndex(where: { $0 < 0 }) {
            throw TensorError.invalidArgument(op: op, message: "targetLengths[\(bad)] = \(targetLengths[bad]) is negative")
        }
        let all = targets.toIntArray()
        var labels: [Int] = [], offsets: [Int] = []
        labels.reserveCapacity(targetLengths.reduce(0, +))
        switch targets.rank {
        case 2:
            let s = targets.shape[1]
            guard targets.shape[0] == n else {
                throw TensorError.shapeMismatch(op: op, message: "padded targets \(targets.shape) must be [N = \(n), S]")
            }
            if let bad = targetLengths.firstIndex(where: { $0 > s }) {
                throw TensorError.invalidArgument(
                    op: op, message: "targetLengths[\(bad)] = \(targetLengths[bad]) is longer than the padded targets (S = \(s))")
            }
            for (i, length) in targetLengths.enumerated() {
                offsets.append(labels.count)
                labels += all[(i * s)..<(i * s + length)]
            }
        case 1:
            let total = targetLengths.reduce(0, +)
            guard total == all.count else {
                throw TensorError.shapeMismatch(
                    op: op, message: "concatenated targets hold \(all.count) labels but targetLengths sum to \(total)")
            }
            labels = all
            var start = 0
            for length in targetLengths { offsets.append(start); start += length }
        default:
            throw TensorError.shapeMismatch(op: op, message: "targets must be padded [N, S] or concatenated [sum(targetLengths)], got \(targets.shape)")
        }
        if let bad = labels.first(where: { $0 < 0 || $0 >= c || $0 == blank }) {
            throw TensorError.invalidArgument(op: op, message: "target label \(bad) is not in 0..<\(c) or is the blank (\(blank))")
        }
        return Kernels.CTCBatch(labels: labels, offsets: offsets, inputLengths: inputLengths, targetLengths: targetLengths,
                                time: time, batch: n, classes: c, blank: blank)
    }
}

/// What the CTC loss keeps for its gradient.
struct CTCState: @unchecked Sendable {
    let logProbs: Tensor
    let batch: Kernels.CTCBatch
    /// The forward variables of every frame and the per-sample losses.
    let alpha: Tensor, nll: Tensor
    let reduction: Reduction
    /// Each sample's target length, at least 1 (the `.mean` divisors).
    let divisors: [Double]
    let zeroInfinity: Bool
}
