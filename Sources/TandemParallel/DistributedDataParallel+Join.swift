import TandemDistributed
import TandemNN

/// Uneven inputs: `join { }`, PyTorch's `Join` context manager for DDP.
extension DistributedDataParallel {
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
        guard let reducer else { return try body() }
        guard joinDivideByInitialWorldSize == nil else { throw DataParallelError.invalidArgument("join { } cannot be nested") }
        let sync = module.namedModules().filter { $0.1 is SyncBatchNorm }.map { $0.0.isEmpty ? "the model" : $0.0 }
        guard sync.isEmpty else {
            throw DataParallelError.invalidArgument("join { } does not support SyncBatchNorm (\(sync.prefix(4).joined(separator: ", "))): its all-reduces in the forward pass cannot be shadowed by ranks that have finished; use BatchNorm or give every rank the same number of batches")
        }
        joinDivideByInitialWorldSize = divideByInitialWorldSize
        defer {
            joinDivideByInitialWorldSize = nil
        }
        let result = try body()
        if let failure = reducer.failure { throw failure }
        // Shadow the ranks still training, one loop per training iteration of theirs.
        expectsGradients = false
        reducer.reset(.init(divisor: nil, carryingBuffers: false))
        var isLastJoiner = true
        while true {
            let status = try joinStatus(active: false, syncing: false)
            if status.active == 0 { break }
            isLastJoiner = false
            if broadcastBuffers { try broadcastBufferValues(root: status.authoritativeRank) }
            if status.syncing {
                let op: ReduceOp = divideByInitialWorldSize ? .average : .sum
                try reducer.reduceZeros(op: op)
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
    func joinStatus(active: Bool, syncing: Bool) throws -> (active: Int, authoritativeRank: Int, syncing: Bool) {
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

}
