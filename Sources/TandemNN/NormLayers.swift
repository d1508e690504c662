/// Batch normalisation over `[N, C]` or `[N, C, *]` (BatchNorm1d / BatchNorm2d): batch
/// statistics in training (running statistics updated with `momentum`), running statistics
/// in evaluation. Parameters `weight`, `bias` `[C]`; buffers `running_mean`, `running_var`
/// `[C]`, `num_batches_tracked` (int64 scalar), named as in PyTorch.
open class BatchNorm: Module {
    public let weight: Parameter?
    public let bias: Parameter?
    public let runningMean: Buffer
    public let runningVar: Buffer
    public let numBatchesTracked: Buffer
    public let eps: Double, momentum: Double
    public var isTraining = true

    public init(_ numFeatures: Int, eps: Double = 1e-5, momentum: Double = 0.1, affine: Bool = true) {
        weight = affine ? Parameter(Tensor.ones([numFeatures])) : nil
        bias = affine ? Parameter(Tensor.zeros([numFeatures])) : nil
        runningMean = Buffer(Tensor.zeros([numFeatures]))
        runningVar = Buffer(Tensor.ones([numFeatures]))
        numBatchesTracked = Buffer(Tensor.zeros([], dtype: .int64))
        self.eps = eps
        self.momentum = momentum
    }

    public var localParameters: [(String, Parameter)] {
        (weight.map { [("weight", $0)] } ?? []) + (bias.map { [("bias", $0)] } ?? [])
    }
    public var localBuffers: [(String, Buffer)] {
        [("running_mean", runningMean), ("running_var", runningVar), ("num_batches_tracked", numBatchesTracked)]
    }

    open func callAsFunction(_ input: Tensor) throws -> Tensor {
        var mean: Tensor? = runningMean.value, variance: Tensor? = runningVar.value
        let out = try Tensor.batchNorm(input, runningMean: &mean, runningVar: &variance, weight: weight?.value,
                                       bias: bias?.value, training: isTraining, momentum: momentum, eps: eps)
        if isTraining {
            if let mean { runningMean.value = mean }
            if let variance { runningVar.value = variance }
            try countBatch()
        }
        return out
    }
}

extension BatchNorm {
    /// Folds one training batch's statistics into the running ones, as `callAsFunction` does in
    /// training mode (`Tensor.updatedRunningStatistic`): `batchMean` and the biased
    /// `batchVariance` over `count` values per channel; counts the batch.
    public func updateRunningStatistics(batchMean: [Double], batchVariance: [Double], count: Int) throws {
        runningMean.value = Tensor.updatedRunningStatistic(runningMean.value, batch: batchMean, momentum: momentum)
        runningVar.value = Tensor.updatedRunningStatistic(runningVar.value, batch: batchVariance, momentum: momentum, count: count)
        try countBatch()
    }

    /// `num_batches_tracked += 1`.
    func countBatch() throws {
        numBatchesTracked.value = Tensor(int64: [Int(try numBatchesTracked.value.item()) + 1], shape: [])
    }
}

/// BatchNorm over `[N, C]` or `[N, C, L]`.
public final class BatchNorm1d: BatchNorm {}
/// BatchNorm over `[N, C, H, W]`.
public final class BatchNorm2d: BatchNorm {}

/// Layer normalisation over the trailing `normalizedShape` dimensions.
public final class LayerNorm: Module {
    public let weight: Parameter?, bias: Parameter?
    public let normalizedShape: [Int], eps: Double
    public var isTraining = true
    public init(_ normalizedShape: [Int], eps: Double = 1e-5, elementwiseAffine: Bool = true) {
        self.normalizedShape = normalizedShape; self.eps = eps
        weight = elementwiseAffine ? Parameter(Tensor.ones(normalizedShape)) : nil
        bias = elementwiseAffine ? Parameter(Tensor.zeros(normalizedShape)) : nil
    }
    public var localParameters: [(String, Parameter)] {
        (weight.map { [("weight", $0)] } ?? []) + (bias.map { [("bias", $0)] } ?? [])
    }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try Tensor.layerNorm(input, normalizedShape: normalizedShape, weight: weight?.value, bias: bias?.value, eps: eps)
    }
}

/// RMS normalisation over the trailing `normalizedShape` dimensions.
public final class RMSNorm: Module {
    public let weight: Parameter?
    public let normalizedShape: [Int], eps: Double
    public var isTraining = true
    public init(_ normalizedShape: [Int], eps: Double = 1e-6, elementwiseAffine: Bool = true) {
        self.normalizedShape = normalizedShape; self.eps = eps
        weight = elementwiseAffine ? Parameter(Tensor.ones(normalizedShape)) : nil
    }
    public var localParameters: [(String, Parameter)] { weight.map { [("weight", $0)] } ?? [] }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try Tensor.rmsNorm(input, normalizedShape: normalizedShape, weight: weight?.value, eps: eps)
    }
}

/// Group normalisation of `[N, C, *]` in `numGroups` groups of channels.
public final class GroupNorm: Module {
    public let weight: Parameter?, bias: Parameter?
    public let numGroups: Int, eps: Double
    public var isTraining = true
    public init(numGroups: Int, numChannels: Int, eps: Double = 1e-5, affine: Bool = true) {
        self.numGroups = numGroups; self.eps = eps
        weight = affine ? Parameter(Tensor.ones([numChannels])) : nil
        bias = affine ? Parameter(Tensor.zeros([numChannels])) : nil
    }
    public var localParameters: [(String, Parameter)] {
        (weight.map { [("weight", $0)] } ?? []) + (bias.map { [("bias", $0)] } ?? [])
    }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try Tensor.groupNorm(input, numGroups: numGroups, weight: weight?.value, bias: bias?.value, eps: eps)
    }
}
