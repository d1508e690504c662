import TandemDistributed
import TandemNN

/// Batch normalisation whose training statistics come from every rank of a process group
/// (`torch.nn.SyncBatchNorm`): per-channel sums, sums of squares and counts are all-reduced,
/// so uneven per-rank batches are weighted by their size. Backward all-reduces the two
/// per-channel sums the input gradient needs. In eval mode, or with one rank, it is BatchNorm.
public final class SyncBatchNorm: BatchNorm {
    /// The ranks whose batches make up the statistics.
    public let processGroup: any ProcessGroup

    /// A SyncBatchNorm with `numFeatures` channels over `processGroup`.
    public init(_ numFeatures: Int, processGroup: any ProcessGroup, eps: Double = 1e-5, momentum: Double = 0.1, affine: Bool = true) {
        self.processGroup = processGroup
        super.init(numFeatures, eps: eps, momentum: momentum, affine: affine)
    }

    /// Normalises `input` `[N, C, ...]` with statistics over every rank's batch (training) or
    /// the running statistics (eval).
    public override func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard isTraining, processGroup.worldSize > 1 else { return try super.callAsFunction(input) }
        // Normalisation stays float32 under autocast (like BatchNorm).
        if input.dtype.isLowPrecision { return try callAsFunction(input.to(.float32)) }
        guard input.rank >= 2, input.shape[1] == runningMean.value.count else {
            throw TensorError.shapeMismatch(op: "SyncBatchNorm", message: "input \(input.shape) for \(runningMean.value.count) channels")
        }
        let c = input.shape[1]
        let axes = [0] + Array(2..<input.rank)
        let x = input.to(.float64)
        let localCount = Double(input.count / Swift.max(c, 1))
        // [sum_c..., sumsq_c..., count] in one all-reduce.
        let stats = try Tensor.withNoGrad {
            try Tensor.cat([x.sum(axes: axes), (x * x).sum(axes: axes), Tensor([localCount], shape: [1], dtype: .float64)])
        }
        let total = try processGroup.allReduce(stats, op: .sum).toDoubleArray()
        let n = total[2 * c]
        guard n > 1 else {
            throw TensorError.invalidArgument(op: "SyncBatchNorm", message: "needs more than one value per channel across all ranks, got \(Int(n))")
        }
        let mean = (0..<c).map { total[$0] / n }
        let variance = (0..<c).map { Swift.max(total[c + $0] / n - mean[$0] * mean[$0], 0) }
        try updateRunningStatistics(batchMean: mean, batchVariance: variance, count: Int(n))

        var viewShape = [Int](repeating: 1, count: input.rank)
        viewShape[1] = c
        let invStd = Tensor(variance.map { 1 / ($0 + eps).squareRoot() }, shape: viewShape, dtype: input.dtype)
        let meanT = Tensor(mean, shape: viewShape, dtype: input.dtype)
        let xhat = try Tensor.withNoGrad { try (input.detach() - meanT) * invStd }
        let group = processGroup
        // Normalisation with a hand-written backward that reduces across ranks.
        let normalized = Tensor.customFunction("syncBatchNorm", value: xhat, inputs: [input]) { g in
            let gd = g.to(.float64), xh = xhat.to(.float64)
            let sums = try Tensor.cat([gd.sum(axes: axes), (gd * xh).sum(axes: axes)])
            let global = try group.allReduce(sums, op: .sum).toDoubleArray()
            let meanDy = Tensor((0..<c).map { global[$0] / n }, shape: viewShape, dtype: input.dtype)
            let meanDyXhat = Tensor((0..<c).map { global[c + $0] / n }, shape: viewShape, dtype: input.dtype)
            return [try (g - meanDy - xhat * meanDyXhat) * invStd]
        }
        var out = normalized
        if let weight { out = try out * weight.value.reshape(viewShape) }
        if let bias { out = try out + bias.value.reshape(viewShape) }
        return out
    }
}

/// Replaces every BatchNorm in `module` (recursively, through Sequential children) by a
/// SyncBatchNorm over `processGroup` carrying the same parameters and statistics.
/// Returns the module (a BatchNorm at the root is returned converted).
public func convertSyncBatchNorm(_ module: any Module, processGroup: any ProcessGroup) throws -> any Module {
    if let bn = module as? BatchNorm, !(bn is SyncBatchNorm) {
        let sync = SyncBatchNorm(bn.runningMean.value.count, processGroup: processGroup, eps: bn.eps, momentum: bn.momentum,
                                 affine: bn.weight != nil)
        try sync.loadStateDict(Dictionary(uniqueKeysWithValues: bn.stateDict()))
        return sync
    }
    if let container = module as? any ReplaceableChildren {
        for (name, child) in module.children {
            container.replaceChild(named: name, with: try convertSyncBatchNorm(child, processGroup: processGroup))
        }
    } else {
        for (_, child) in module.children { _ = try convertSyncBatchNorm(child, processGroup: processGroup) }
    }
    return module
}
