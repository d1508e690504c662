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
public final class DistributedDataParallel: Module {
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

    struct Bucket {
        var members: [Int]          // parameter indices
        var offsets: [Int]          // element offset of each member in the flat buffer
        var flat: Tensor
        var ready = 0
        /// The asynchronous all-reduce of a bucket launched while backward goes on.
        var work: Work<Tensor>?
        /// True once `flat` holds the reduced gradients (the last bucket is reduced in place,
        /// on the thread that would otherwise only wait for it).
        var reducedInPlace = false
    }

    private let named: [(String, Parameter)]
    private var buckets: [Bucket] = []
    private var bucketOf: [Int] = []       // parameter index -> bucket index
    private var readyFlags: [Bool] = []
    private var nextToLaunch = 0
    private var syncEnabled = true
    private var inIteration = false
    private var failure: (any Error)?
    /// Inside `join { }`: its `divideByInitialWorldSize`.
    private var joinDivideByInitialWorldSize: Bool?
    /// Under `join` with `divideByInitialWorldSize: false`: buckets are summed and divided by this
    /// iteration's number of active ranks.
    private var gradientDivisor: Int?
    /// Carries the buffers in bucket 0 after its gradients (nil: broadcast them instead).
    private var bufferSync: BufferSync?
    /// Where bucket 0's buffer section starts.
    private var bufferSection = 0
    /// True while every rank holds rank 0's buffers (no training forward pass since).
    private var buffersInSync = false
    /// Whether this iteration's bucket 0 carries the buffers.
    private var carryingBuffers = false

    /// Seconds the last synchronised backward pass spent blocked in gradient all-reduces: the
    /// in-place reduction of the last bucket and the waits for the others. Mostly waiting for
    /// the slowest rank to finish its backward pass; the transfer itself is a small part
    /// (`tandem bench allreduce`). 0 with one rank, under `noSync`, and before the first step.
    public private(set) var lastCommunicationSeconds = 0.0

    /// Wraps `module`. Throws if the ranks' models differ or a collective fails.
    public init(_ module: any Module, processGroup: any ProcessGroup, bucketCapMB: Double = 25,
                broadcastBuffers: Bool = true, findUnusedParameters: Bool = false) throws {
        guard bucketCapMB > 0 else { throw DataParallelError.invalidArgument("bucketCapMB must be positive") }
        self.module = module
        self.processGroup = processGroup
        self.broadcastBuffers = broadcastBuffers
        self.findUnusedParameters = findUnusedParameters
        named = module.namedParameters()
        readyFlags = Array(repeating: false, count: named.count)
        guard processGroup.worldSize > 1 else { return }
        try verifySameModel()
        try broadcastState()
        buffersInSync = true
        buildBuckets(capBytes: Int(bucketCapMB * 1_048_576))
        if broadcastBuffers, let sync = BufferSync(module.namedBuffers().map(\.1)), let first = buckets.first,
           [DType.float32, .float64].contains(first.flat.dtype) {
            bufferSync = sync
            bufferSection = first.flat.count
            buckets[0].flat = Tensor.zeros([first.flat.count + sync.elementCount], dtype: first.flat.dtype)
        }
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
        guard processGroup.worldSize > 1 else { return try module(input) }
        if let failure { throw failure }
        if inIteration && syncEnabled && module.isTraining && nextToLaunch > 0 && nextToLaunch < buckets.count {
            let missing = named.indices.filter { !readyFlags[$0] }.map { named[$0].0 }
            throw DataParallelError.unusedParameters(rank: processGroup.rank, names: missing)
        }
        resetIteration()
        if let divideByInitialWorldSize = joinDivideByInitialWorldSize {
            // Under join only training iterations (which the joined ranks shadow) communicate.
            guard module.isTraining && GradMode.enabled else { return try module(input) }
            let status = try joinStatus(active: true, syncing: syncEnabled)
            gradientDivisor = divideByInitialWorldSize ? nil : status.active
            if broadcastBuffers { try broadcastBufferValues(root: status.authoritativeRank) }
        } else if broadcastBuffers && module.isTraining && !buffersInSync {
            try broadcastBufferValues()
        }
        let output = try module(input)
        if module.isTraining {
            buffersInSync = false
            carryingBuffers = broadcastBuffers && GradMode.enabled && syncEnabled && joinDivideByInitialWorldSize == nil
                && bufferSync?.fits == true
        }
        if module.isTraining && GradMode.enabled {
            inIteration = true
            if findUnusedParameters && syncEnabled {
                let reached = output.reachableLeafIDs()
                for (i, (_, p)) in named.enumerated() where p.value.leafID.map({ !reached.contains($0) }) ?? true {
                    markReady(i, gradient: nil)
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

    // MARK: - Uneven inputs

    /// Runs `body`, a training loop whose number of iterations may differ between ranks, like
    /// PyTorch's `with Join([ddp]):`. A rank whose `body` returns early keeps shadowing the
    /// others: for each training forward pass of the ranks still active it takes part in the
    /// per-iteration all-reduce of the "still active" flags, in the buffer broadcast, and in every
    /// bucket's gradient all-reduce with zero gradients, until every rank has returned. Then all
    /// ranks take the parameters and buffers of the last rank to finish (the highest one if
    /// several finish together), so the models end identical.
    ///
    /// Gradients are divided by the full world size by default, as PyTorch's
    /// `divide_by_initial_world_size=True`: an iteration in which only k of n ranks still have
    /// data gets the sum of their gradients ÷ n (the joined ranks contribute zeros), which keeps
    /// each sample's weight the same in every iteration. With `divideByInitialWorldSize: false`
    /// the sum is divided by k, the ranks still active.
    ///
    /// Each training forward pass (training mode, gradients enabled) inside `join` costs one
    /// extra small all-reduce; evaluation passes (`eval()` or `Tensor.withNoGrad`) do not
    /// communicate. Buffers are broadcast from the highest active rank instead of rank 0 (rank 0
    /// may have finished). Models with `SyncBatchNorm` cannot join (its forward all-reduces could
    /// not be shadowed), as in PyTorch; the call throws then. If `body` throws, the error is
    /// rethrown at once and the other ranks fail when their collectives time out.
    public func join<R>(divideByInitialWorldSize: Bool = true, _ body: () throws -> R) throws -> R {
        guard processGroup.worldSize > 1 else { return try body() }
        guard joinDivideByInitialWorldSize == nil else { throw DataParallelError.invalidArgument("join { } cannot be nested") }
        let sync = module.namedModules().filter { $0.1 is SyncBatchNorm }.map { $0.0.isEmpty ? "the model" : $0.0 }
        guard sync.isEmpty else {
            throw DataParallelError.invalidArgument("join { } does not support SyncBatchNorm (\(sync.prefix(4).joined(separator: ", "))): its all-reduces in the forward pass cannot be shadowed by ranks that have finished; use BatchNorm or give every rank the same number of batches")
        }
        joinDivideByInitialWorldSize = divideByInitialWorldSize
        defer {
            joinDivideByInitialWorldSize = nil
            gradientDivisor = nil
        }
        let result = try body()
        if let failure { throw failure }
        // Shadow the ranks still training, one loop per training iteration of theirs.
        resetIteration()
        var isLastJoiner = true
        while true {
            let status = try joinStatus(active: false, syncing: false)
            if status.active == 0 { break }
            isLastJoiner = false
            if broadcastBuffers { try broadcastBufferValues(root: status.authoritativeRank) }
            if status.syncing {
                let op: ReduceOp = divideByInitialWorldSize ? .average : .sum
                for b in buckets.indices {
                    var zeros = Tensor.zeros(buckets[b].flat.shape, dtype: buckets[b].flat.dtype)
                    try processGroup.allReduce(&zeros, op: op)
                }
            }
        }
        // Everyone takes the model of the last rank to finish (the highest if several).
        var flags = [Double](repeating: 0, count: processGroup.worldSize)
        if isLastJoiner { flags[processGroup.rank] = 1 }
        let last = try processGroup.allReduce(Tensor(flags, shape: [flags.count], dtype: .float64), op: .sum).toDoubleArray()
        let root = last.lastIndex { $0 > 0 } ?? 0
        for (_, p) in named {
            let value = try processGroup.broadcast(p.value.detach(), root: root)
            try p.value.copyValues(from: value)
        }
        try broadcastBufferValues(root: root)
        return result
    }

    /// The per-iteration all-reduce under `join`: element r is 1 when rank r is still active,
    /// the last element counts the active ranks that synchronise gradients this iteration.
    private func joinStatus(active: Bool, syncing: Bool) throws -> (active: Int, authoritativeRank: Int, syncing: Bool) {
        let w = processGroup.worldSize
        var flags = [Double](repeating: 0, count: w + 1)
        if active {
            flags[processGroup.rank] = 1
            flags[w] = syncing ? 1 : 0
        }
        let reduced = try processGroup.allReduce(Tensor(flags, shape: [w + 1], dtype: .float64), op: .sum).toDoubleArray()
        let ranks = reduced[0..<w]
        return (ranks.filter { $0 > 0 }.count, ranks.lastIndex { $0 > 0 } ?? 0, reduced[w] > 0)
    }

    // MARK: - Construction

    private func verifySameModel() throws {
        let description = named.map { "\($0.0)\($0.1.shape)" }.joined(separator: ";")
        let mine = Array(description.utf8).map(Double.init)
        let length = try processGroup.broadcast(Tensor([Double(mine.count)], shape: [1], dtype: .float64), root: 0)
        let rootLength = Int(try length.item())
        var mismatch = 0.0
        var message = ""
        if rootLength != mine.count && processGroup.rank != 0 {
            mismatch = 1
        }
        let padded = Tensor((mine + [Double](repeating: 0, count: Swift.max(0, rootLength - mine.count))).prefix(rootLength).map { $0 },
                            shape: [rootLength], dtype: .float64)
        let rootBytes = try processGroup.broadcast(padded, root: 0).toDoubleArray().map { UInt8($0) }
        let rootDescription = String(decoding: rootBytes, as: UTF8.self)
        if rootDescription != description {
            mismatch = 1
            let theirs = rootDescription.split(separator: ";"), ours = description.split(separator: ";")
            let i = Array(zip(theirs, ours)).firstIndex { $0.0 != $0.1 } ?? Swift.min(theirs.count, ours.count)
            let a = i < theirs.count ? String(theirs[i]) : "nothing", b = i < ours.count ? String(ours[i]) : "nothing"
            message = "parameter \(i) is \(b) here but \(a) on rank 0"
        }
        // Every rank learns whether any rank differs, so they fail together instead of hanging.
        let any = try processGroup.allReduce(Tensor([mismatch], shape: [1], dtype: .float64), op: .max)
        if try any.item() > 0 {
            throw DataParallelError.modelMismatch(rank: processGroup.rank, message: message.isEmpty ? "another rank's parameters differ from rank 0's" : message)
        }
    }

    private func broadcastState() throws {
        for (_, p) in named {
            let value = try processGroup.broadcast(p.value.detach(), root: 0)
            try p.value.copyValues(from: value)
        }
        try broadcastBufferValues()
    }

    /// Broadcasts the buffers from `root` coalesced, one collective per dtype (like PyTorch's
    /// `_sync_buffers`): a ConvNet's six BatchNorm buffers cost two broadcasts per step, not six.
    private func broadcastBufferValues(root: Int = 0) throws {
        let buffers = module.namedBuffers().map(\.1)
        for dtype in [DType.float32, .float64, .int64] {
            let same = buffers.filter { $0.value.dtype == dtype }
            if same.count == 1 { same[0].value = try processGroup.broadcast(same[0].value, root: root) }
            guard same.count > 1 else { continue }
            let flat = try processGroup.broadcast(Tensor.cat(same.map { try $0.value.flatten() }), root: root)
            var offset = 0
            for b in same {
                var value = b.value
                try value.copyValues(from: flat.narrow(axis: 0, start: offset, length: value.count).reshape(value.shape))
                b.value = value
                offset += value.count
            }
        }
    }

    private func buildBuckets(capBytes: Int) {
        bucketOf = Array(repeating: 0, count: named.count)
        var current: [Int] = []
        var bytes = 0
        var cap = Swift.min(capBytes, 1_048_576)
        func close() {
            guard !current.isEmpty else { return }
            var offsets: [Int] = []
            var total = 0
            for i in current { offsets.append(total); total += named[i].1.value.count }
            let dtype = named[current[0]].1.value.dtype
            for i in current { bucketOf[i] = buckets.count }
            buckets.append(Bucket(members: current, offsets: offsets, flat: Tensor.zeros([total], dtype: dtype)))
            current = []
            bytes = 0
            cap = capBytes
        }
        for i in named.indices.reversed() {
            let p = named[i].1.value
            if let first = current.first, named[first].1.value.dtype != p.dtype { close() }
            current.append(i)
            bytes += p.count * p.dtype.byteSize
            if bytes >= cap { close() }
        }
        close()
    }

    // MARK: - Per iteration

    private func resetIteration() {
        for b in buckets.indices { buckets[b].ready = 0; buckets[b].work = nil; buckets[b].reducedInPlace = false }
        carryingBuffers = false
        lastCommunicationSeconds = 0
        for i in readyFlags.indices { readyFlags[i] = false }
        nextToLaunch = 0
        inIteration = false
    }

    private func gradientReady(_ index: Int, _ gradient: Tensor) {
        guard syncEnabled, processGroup.worldSize > 1, failure == nil, !readyFlags[index] else { return }
        markReady(index, gradient: gradient)
    }

    /// Copies a gradient (nil: zeros, for an unused parameter) into its bucket and launches
    /// every consecutive full bucket; after the last one, waits and writes gradients back.
    private func markReady(_ index: Int, gradient: Tensor?) {
        readyFlags[index] = true
        let b = bucketOf[index]
        let k = buckets[b].members.firstIndex(of: index)!
        let offset = buckets[b].offsets[k]
        do {
            let n = named[index].1.value.count
            if let gradient {
                let dtype = buckets[b].flat.dtype
                let source = gradient.to(dtype)
                try copy(source, into: &buckets[b].flat, at: offset, count: n)
            } else {
                try zero(&buckets[b].flat, at: offset, count: n)
            }
            buckets[b].ready += 1
            // Buffers ride in bucket 0 and must not be averaged: then every bucket is summed and
            // `finish` divides the gradients.
            let op: ReduceOp = gradientDivisor == nil && !carryingBuffers ? .average : .sum
            while nextToLaunch < buckets.count && buckets[nextToLaunch].ready == buckets[nextToLaunch].members.count {
                if nextToLaunch == 0, let sync = bufferSync {
                    try sync.encode(into: &buckets[0].flat, at: bufferSection, isRoot: carryingBuffers && processGroup.rank == 0)
                }
                if nextToLaunch == buckets.count - 1 {
                    // Backward is over: reduce here instead of handing off to the group's thread and waiting.
                    try countingCommunication { try processGroup.allReduce(&buckets[nextToLaunch].flat, op: op) }
                    buckets[nextToLaunch].reducedInPlace = true
                } else {
                    buckets[nextToLaunch].work = processGroup.allReduceAsync(buckets[nextToLaunch].flat, op: op)
                }
                nextToLaunch += 1
            }
            if nextToLaunch == buckets.count { try finish() }
        } catch {
            failure = error
        }
    }

    /// Runs a blocking all-reduce or wait and adds its duration to `lastCommunicationSeconds`.
    private func countingCommunication<R>(_ body: () throws -> R) rethrows -> R {
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try body()
        lastCommunicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return result
    }

    private func finish() throws {
        for b in buckets.indices {
            var averaged: Tensor
            if buckets[b].reducedInPlace {
                averaged = buckets[b].flat
            } else if let work = buckets[b].work {
                averaged = try countingCommunication { try work.wait() }
            } else {
                continue
            }
            if b == 0 && carryingBuffers, let sync = bufferSync {
                try sync.decode(from: averaged, at: bufferSection)
                buffersInSync = true
            }
            if let divisor = gradientDivisor ?? (carryingBuffers ? processGroup.worldSize : nil) {
                averaged = try averaged / Double(divisor)
            }
            for (k, i) in buckets[b].members.enumerated() {
                let p = named[i].1
                let slice = try averaged.narrow(axis: 0, start: buckets[b].offsets[k], length: p.value.count).reshape(p.shape)
                try p.value.setGrad(slice.contiguous())
            }
        }
        inIteration = false
    }

    /// Throws the error of a failed all-reduce from the last backward pass (hooks cannot
    /// throw), or names the parameters that got no gradient so that the step would use
    /// gradients that were never averaged. Call after `backward()`; the Trainer does.
    public func synchronize() throws {
        if let failure { throw failure }
        if processGroup.worldSize > 1 && inIteration && syncEnabled && module.isTraining && nextToLaunch < buckets.count {
            let missing = named.indices.filter { !readyFlags[$0] }.map { named[$0].0 }
            throw DataParallelError.unusedParameters(rank: processGroup.rank, names: missing)
        }
    }

    private func copy(_ source: Tensor, into flat: inout Tensor, at offset: Int, count: Int) throws {
        if flat.dtype == .float64 {
            try source.withUnsafeBufferPointer(as: Double.self) { s in
                try flat.withUnsafeMutableBufferPointer(as: Double.self) { d in
                    for j in 0..<count { d[offset + j] = s[j] }
                }
            }
        } else {
            try source.withUnsafeBufferPointer(as: Float.self) { s in
                try flat.withUnsafeMutableBufferPointer(as: Float.self) { d in
                    for j in 0..<count { d[offset + j] = s[j] }
                }
            }
        }
    }

    private func zero(_ flat: inout Tensor, at offset: Int, count: Int) throws {
        if flat.dtype == .float64 {
            try flat.withUnsafeMutableBufferPointer(as: Double.self) { d in for j in 0..<count { d[offset + j] = 0 } }
        } else {
            try flat.withUnsafeMutableBufferPointer(as: Float.self) { d in for j in 0..<count { d[offset + j] = 0 } }
        }
    }
}
