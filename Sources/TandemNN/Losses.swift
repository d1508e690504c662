/// Cross-entropy over class logits `[N, C]` (or `[N, C, d...]`) and int64 targets `[N]`
/// (or `[N, d...]`), with PyTorch's reduction, ignore index and label smoothing.
public struct CrossEntropyLoss {
    public var reduction: Reduction
    public var ignoreIndex: Int
    public var labelSmoothing: Double
    public init(reduction: Reduction = .mean, ignoreIndex: Int = -100, labelSmoothing: Double = 0) {
        self.reduction = reduction; self.ignoreIndex = ignoreIndex; self.labelSmoothing = labelSmoothing
    }
    public func callAsFunction(_ logits: Tensor, _ target: Tensor) throws -> Tensor {
        try Tensor.crossEntropy(logits, target: target, reduction: reduction, ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing)
    }
}

/// Negative log-likelihood of log-probabilities `[N, C]` at int64 targets `[N]`.
public struct NLLLoss {
    public var reduction: Reduction
    public var ignoreIndex: Int
    public init(reduction: Reduction = .mean, ignoreIndex: Int = -100) { self.reduction = reduction; self.ignoreIndex = ignoreIndex }
    public func callAsFunction(_ logProbs: Tensor, _ target: Tensor) throws -> Tensor {
        try Tensor.nllLoss(logProbs: logProbs, target: target, reduction: reduction, ignoreIndex: ignoreIndex)
    }
}

/// Mean squared error between equally shaped tensors.
public struct MSELoss {
    public var reduction: Reduction
    public init(reduction: Reduction = .mean) { self.reduction = reduction }
    public func callAsFunction(_ input: Tensor, _ target: Tensor) throws -> Tensor {
        try Tensor.mseLoss(input, target, reduction: reduction)
    }
}

/// Binary cross-entropy on logits (numerically stable), with an optional positive-class weight.
public struct BCEWithLogitsLoss {
    public var reduction: Reduction
    public var posWeight: Tensor?
    public init(reduction: Reduction = .mean, posWeight: Tensor? = nil) { self.reduction = reduction; self.posWeight = posWeight }
    public func callAsFunction(_ logits: Tensor, _ target: Tensor) throws -> Tensor {
        try Tensor.binaryCrossEntropyWithLogits(logits, target, reduction: reduction, posWeight: posWeight)
    }
}

/// CTC loss of time-major log-probabilities `[T, N, C]` against padded `[N, S]` or
/// concatenated targets, with lengths `[N]` (see `Tensor.ctcLoss`); `[N]` for `.none`, `[]` otherwise.
public struct CTCLoss {
    /// The blank class, in `0..<C`.
    public var blank: Int
    /// `.mean` divides each loss by its target length (at least 1), then averages over the batch.
    public var reduction: Reduction
    /// Replace infinite losses (impossible alignments) and their gradients by 0.
    public var zeroInfinity: Bool
    /// A CTC loss with PyTorch's defaults (blank 0, mean, infinite losses kept).
    public init(blank: Int = 0, reduction: Reduction = .mean, zeroInfinity: Bool = false) {
        self.blank = blank; self.reduction = reduction; self.zeroInfinity = zeroInfinity
    }
    /// The loss of `logProbs [T, N, C]` for `targets [N, S]` or `[sum(targetLengths)]` and
    /// lengths `[N]`; gradients flow to `logProbs`.
    public func callAsFunction(_ logProbs: Tensor, _ targets: Tensor, inputLengths: [Int], targetLengths: [Int]) throws -> Tensor {
        try Tensor.ctcLoss(logProbs: logProbs, targets: targets, inputLengths: inputLengths, targetLengths: targetLengths,
                           blank: blank, reduction: reduction, zeroInfinity: zeroInfinity)
    }
}
