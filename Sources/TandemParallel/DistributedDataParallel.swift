import Foundation
import Synchronization
import TandemDistributed
import TandemNN

/// Errors of data-parallel training, naming the rank and what to fix.
public enum DataParallelError: Error, CustomStringConvertible {
    /// The ranks' models have different parameter names or shapes.
    case modelMismatch(rank: Int, message: String)
    /// Parameters got no gradient in a backward pass while `findUnusedParameters` was off.
    case unusedParameters(rank: Int, names: [String])
    /// A wrong argument or call (e.g. `join` with SyncBatchNorm, a replica of another architecture).
    case invalidArgument(String)

    /// The message, saying what to fix.
    public var description: String {
        switch self {
        case let .modelMismatch(rank, message):
            return "DistributedDataParallel (rank \(rank)): the ranks hold different models: \(message); build the same model on every rank"
        case let .unusedParameters(rank, names):
            return "DistributedDataParallel (rank \(rank)): the previous backward pass gave no gradient to \(names.prefix(8).joined(separator: ", "))\(names.count > 8 ? " and \(names.count - 8) more" : ""); pass findUnusedParameters: true if the model does not use every parameter each step"
        case let .invalidArgument(message): return "DistributedDataParallel: \(message)"
        }
    }
}

/// Data-parallel training across processes, like `torch.nn.parallel.DistributedDataParallel`.
///
/// At construction every rank checks that all ranks hold the same parameter names and shapes,
/// then takes rank 0's parameters and buffers. Parameters are grouped into buckets in reverse
/// registration order (the first bucket capped at 1 MB, the rest at `bucketCapMB`). During
/// backward, a parameter's gradient hook copies its gradient into its bucket; a full bucket
/// starts an asynchronous all-reduce at once (buckets start in the same order on every rank)
/// while backward goes on; when the last bucket has started, backward waits for all of them
/// and writes the averaged gradients back. With `worldSize == 1` nothing is communicated.
///
/// `module` is the wrapped model; `stateDict()` carries no `module.` prefix.
///
/// When ranks have different numbers of batches, run the training loop inside `join { }`
/// (PyTorch's `Join` context manager): a rank that runs out of batches shadows the collectives
/// of the ranks still training instead of leaving them hanging.
public final class DistributedDataParallel: GradientSynchronizing {
    /// The wrapped model.
    public let module: any Module
    /// The group that gradients are averaged over.
    public let processGroup: any ProcessGroup
    /// Whether each training forward pass starts from rank 0's buffers (BatchNorm running
    /// statistics) on every rank, as PyTorch does. PyTorch broadcasts them before each forward
    /// pass; Tandem carries them in the first gradient bucket of the synchronised backward pass
    /// before (which leaves the same values, one collective fewer per step) and broadcasts
    /// only when that did not happen (the first step, after `noSync`, under `join`, or for
    /// buffers of dtypes other than float32, float64, int32 and int64).
    public let broadcastBuffers: Bool
    /// Whether parameters that took no part in the forward pass are found and reduced as zeros.
    public let findUnusedParameters: Bool
    /// Whether the wrapped model is in training mode.
    public var isTraining: Bool {
        get { module.isTraining }
        set { module.train(newValue) }
    }

    let named: [(String, Parameter)]
    /// Averages the gradients (nil with one rank: nothing to communicate).
    let reducer: GradientReducer?
    /// False inside `noSync`.
    private var syncEnabled = true
    /// True from a training forward pass with gradients on until the next forward pass: the
    /// backward pass in between must give every parameter a gradient.
    var expectsGradients = false
    /// Inside `join { }`: its `divideByInitialWorldSize`.
    var joinDivideByInitialWorldSize: Bool?
    /// True while every rank holds rank 0's buffers (no training forward pass since).
    var buffersInSync = false

    /// Seconds the last synchronised backward pass spent blocked in gradient all-reduces: the
    /// in-place reduction of the last bucket and the waits for the others. Mostly waiting for
    /// the slowest rank to finish its backward pass; the transfer itself is a small part
    /// (`tandem bench allreduce`). 0 with one rank, under `noSync`, and before the first step.
    public var lastCommunicationSeconds: Double { reducer?.communicationSeconds ?? 0 }

    /// Wraps `module`. Throws if the ranks' models differ or a collective fails.
    public init(_ module: any Module, processGroup: any ProcessGroup, bucketCapMB: Double = 25,
                broadcastBuffers: Bool = true, findUnusedParameters: Bool = false) throws {
        guard bucketCapMB > 0 else { throw DataParallelError.invalidArgument("bucketCapMB must be positive") }
        self.module = module
        self.processGroup = processGroup
        self.broadcastBuffers = broadcastBuffers
        self.findUnusedParameters = findUnusedParameters
        named = module.namedParameters()
        guard processGroup.worldSize > 1 else { reducer = nil; return }
        try Self.verifySameModel(processGroup, named)
        reducer = GradientReducer(parameters: named, group: processGroup, capBytes: Int(bucketCapMB * 1_048_576),
                                  bufferSync: broadcastBuffers ? BufferSync(module.namedBuffers().map(\.1)) : nil)
        try broadcastState()
        buffersInSync = true
        for (i, (_, p)) in named.enumerated() {
            try p.value.registerHook { [weak self] gradient in self?.gradientReady(i, gradient) }
        }
    }

    /// None: the wrapped model's parameters and buffers appear without a `module.` prefix.
    public var children: [(String, any Module)] { [] }
    /// The wrapped model's parameters, under their own names (tied weights under each name).
    public var localParameters: [(String, Parameter)] { module.allNamedParameters() }
    /// The wrapped model's buffers, under their own names.
    public var localBuffers: [(String, Buffer)] { module.namedBuffers() }

    /// The inner model's state dict (PyTorch names, no `module.` prefix).
    public func stateDict() -> [(String, Tensor)] { module.stateDict() }

    /// Loads into the inner model; a `module.` prefix on names is stripped.
    public func loadStateDict(_ state: [String: Tensor], strict: Bool = true) throws {
        try module.loadStateDict(state, strict: strict)
    }

    /// Runs the model. Starts a new iteration: checks that the last backward pass reduced
    /// every bucket, re-broadcasts buffers from rank 0, and marks unused parameters ready.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard let reducer else { return try module(input) }
        if let failure = reducer.failure { throw failure }
        if expectsGradients && syncEnabled && module.isTraining && reducer.isPartial {
            throw DataParallelError.unusedParameters(rank: processGroup.rank, names: reducer.missing)
        }
        if reducer.deliveredBuffers { buffersInSync = true }
        expectsGradients = false
        var divisor: Int?
        if let divideByInitialWorldSize = joinDivideByInitialWorldSize {
            reducer.reset(.init(divisor: nil, carryingBuffers: false))
            // Under join only training iterations (which the joined ranks shadow) communicate.
            guard module.isTraining && GradMode.enabled else { return try module(input) }
            let status = try joinStatus(active: true, syncing: syncEnabled)
            divisor = divideByInitialWorldSize ? nil : status.active
            if broadcastBuffers { try broadcastBufferValues(root: status.authoritativeRank) }
        } else if broadcastBuffers && module.isTraining && !buffersInSync {
            try broadcastBufferValues()
        }
        let carrying = module.isTraining && broadcastBuffers && GradMode.enabled && syncEnabled && joinDivideByInitialWorldSize == nil
            && reducer.bufferSync?.fits == true
        reducer.reset(.init(divisor: divisor, carryingBuffers: carrying))
        let output = try module(input)
        if module.isTraining {
            buffersInSync = false
        }
        if module.isTraining && GradMode.enabled {
            expectsGradients = true
            if findUnusedParameters && syncEnabled {
                let reached = output.reachableLeafIDs()
                for (i, (_, p)) in named.enumerated() where p.value.leafID.map({ !reached.contains($0) }) ?? true {
                    reducer.add(i, gradient: nil)
                }
            }
        }
        return output
    }

    /// Runs `body` (forward and backward of micro-batches) without gradient synchronisation;
    /// gradients accumulate locally and the next synchronised backward reduces the total.
    public func noSync<R>(_ body: () throws -> R) rethrows -> R {
        let previous = syncEnabled
        syncEnabled = false
        defer { syncEnabled = previous }
        return try body()
    }

    /// A parameter's gradient hook: its gradient for this backward pass is complete.
    private func gradientReady(_ index: Int, _ gradient: Tensor) {
        guard syncEnabled, let reducer else { return }
        reducer.add(index, gradient: gradient)
    }

    /// Throws the error of a failed all-reduce from the last backward pass (hooks cannot
    /// throw), or names the parameters that got no gradient so that the step would use
    /// gradients that were never averaged. Call after `backward()`; the Trainer does.
    public func synchronize() throws {
        guard let reducer else { return }
        if let failure = reducer.failure { throw failure }
        if expectsGradients && syncEnabled && module.isTraining && !reducer.isReduced {
            throw DataParallelError.unusedParameters(rank: processGroup.rank, names: reducer.missing)
        }
    }
}
