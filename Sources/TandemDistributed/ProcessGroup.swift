import TandemCore

/// A reduction applied element-wise by `allReduce`, `reduce` and `reduceScatter`.
public enum ReduceOp: String, Sendable, CaseIterable {
    /// Sum over ranks.
    case sum
    /// Product over ranks.
    case product
    /// Element-wise minimum over ranks.
    case min
    /// Element-wise maximum over ranks.
    case max
    /// Sum divided by the world size (integer tensors: truncating division).
    case average
}

/// The default timeout of process groups and stores: 30 minutes, as in PyTorch.
public let defaultTimeout: Duration = .seconds(1800)

/// A group of processes that run collectives together (`torch.distributed.ProcessGroup`).
///
/// Every rank must call the same collectives in the same order with tensors of the same
/// shape and dtype (float32, float64 or int64). Asynchronous forms return a `Work` handle;
/// operations of one group run one after another in the order they were issued, so
/// communication can overlap computation (DDP overlaps all-reduce with backward).
/// `timeout: nil` uses the group's `timeout`.
public protocol ProcessGroup: AnyObject, Sendable {
    /// This process's rank in the group, in `0..<worldSize`.
    var rank: Int { get }
    /// The number of processes in the group.
    var worldSize: Int { get }
    /// The group's name, used in error messages and store key prefixes.
    var name: String { get }
    /// The backend's name ("gloo", "inprocess", ...).
    var backendName: String { get }
    /// The default timeout of every operation of this group.
    var timeout: Duration { get }

    /// Reduces `tensor` over all ranks with `op`; every rank gets the result. The group takes
    /// ownership: a caller that passes its only reference (`allReduceAsync(consume t, …)`)
    /// gets the reduction in the same storage, without a copy.
    func allReduceAsync(_ tensor: consuming Tensor, op: ReduceOp, timeout: Duration?) -> Work<Tensor>
    /// In place: replaces `tensor` with its reduction over all ranks. No copy is made when
    /// `tensor`'s storage is not shared (the fastest form for large tensors). Runs after every
    /// operation issued before it.
    func allReduce(_ tensor: inout Tensor, op: ReduceOp, timeout: Duration?) throws
    /// In place: replaces `tensor` with `root`'s on every rank (no copy when not shared).
    func broadcast(_ tensor: inout Tensor, root: Int, timeout: Duration?) throws
    /// Every rank gets `root`'s tensor (the others pass a tensor of the same shape and dtype).
    func broadcastAsync(_ tensor: Tensor, root: Int, timeout: Duration?) -> Work<Tensor>
    /// Every rank gets the list of all ranks' tensors, in rank order.
    func allGatherAsync(_ tensor: Tensor, timeout: Duration?) -> Work<[Tensor]>
    /// `root` gets the reduction of all ranks' tensors; other ranks get their input back.
    func reduceAsync(_ tensor: Tensor, root: Int, op: ReduceOp, timeout: Duration?) -> Work<Tensor>
    /// `root` gets all ranks' tensors in rank order; other ranks get an empty list.
    func gatherAsync(_ tensor: Tensor, root: Int, timeout: Duration?) -> Work<[Tensor]>
    /// Rank `i` gets `scatterList[i]` from `root`. Only `root` passes `scatterList`
    /// (`worldSize` tensors shaped like `tensor`); every rank passes `tensor` as the shape template.
    func scatterAsync(_ tensor: Tensor, scatterList: [Tensor], root: Int, timeout: Duration?) -> Work<Tensor>
    /// Reduces `inputList` (one tensor per rank, same shapes) over ranks; rank `i` gets the
    /// reduction of everyone's `inputList[i]`.
    func reduceScatterAsync(_ inputList: [Tensor], op: ReduceOp, timeout: Duration?) -> Work<Tensor>
    /// Completes once every rank has reached the barrier.
    func barrierAsync(timeout: Duration?) -> Work<Void>
    /// Sends `tensor` to rank `dst`; completes when it has been delivered.
    func sendAsync(_ tensor: Tensor, to dst: Int, tag: Int, timeout: Duration?) -> Work<Void>
    /// Receives a tensor shaped like `tensor` from rank `src`.
    func recvAsync(_ tensor: Tensor, from src: Int, tag: Int, timeout: Duration?) -> Work<Tensor>
    /// A subgroup of `ranks` (ranks of this group). Every rank of this group must call it,
    /// in the same order; ranks outside `ranks` get nil.
    func newGroup(ranks: [Int], timeout: Duration?) throws -> (any ProcessGroup)?
    /// Releases the connections. Further operations fail.
    func destroy()
}

extension ProcessGroup {
    /// `allReduceAsync` with the group's timeout.
    public func allReduceAsync(_ tensor: consuming Tensor, op: ReduceOp = .sum) -> Work<Tensor> {
        allReduceAsync(consume tensor, op: op, timeout: nil)
    }
    /// Reduces `tensor` over all ranks with `op` and returns the result (every rank gets it).
    public func allReduce(_ tensor: Tensor, op: ReduceOp = .sum, timeout: Duration? = nil) throws -> Tensor {
        try allReduceAsync(tensor, op: op, timeout: timeout).wait()
    }
    /// In place: replaces `tensor` with its reduction over all ranks.
    public func allReduce(_ tensor: inout Tensor, op: ReduceOp = .sum) throws {
        try allReduce(&tensor, op: op, timeout: nil)
    }
    /// In place: replaces `tensor` with `root`'s.
    public func broadcast(_ tensor: inout Tensor, root: Int = 0) throws {
        try broadcast(&tensor, root: root, timeout: nil)
    }
    /// Returns `root`'s tensor on every rank.
    public func broadcast(_ tensor: Tensor, root: Int = 0, timeout: Duration? = nil) throws -> Tensor {
        try broadcastAsync(tensor, root: root, timeout: timeout).wait()
    }
    /// Returns every rank's tensor, in rank order.
    public func allGather(_ tensor: Tensor, timeout: Duration? = nil) throws -> [Tensor] {
        try allGatherAsync(tensor, timeout: timeout).wait()
    }
    /// Returns the reduction on `root` (other ranks get their input back).
    public func reduce(_ tensor: Tensor, root: Int = 0, op: ReduceOp = .sum, timeout: Duration? = nil) throws -> Tensor {
        try reduceAsync(tensor, root: root, op: op, timeout: timeout).wait()
    }
    /// Returns every rank's tensor on `root`, an empty list elsewhere.
    public func gather(_ tensor: Tensor, root: Int = 0, timeout: Duration? = nil) throws -> [Tensor] {
        try gatherAsync(tensor, root: root, timeout: timeout).wait()
    }
    /// Returns `scatterList[rank]` from `root`.
    public func scatter(_ tensor: Tensor, scatterList: [Tensor] = [], root: Int = 0, timeout: Duration? = nil) throws -> Tensor {
        try scatterAsync(tensor, scatterList: scatterList, root: root, timeout: timeout).wait()
    }
    /// Returns the reduction over ranks of everyone's `inputList[rank]`.
    public func reduceScatter(_ inputList: [Tensor], op: ReduceOp = .sum, timeout: Duration? = nil) throws -> Tensor {
        try reduceScatterAsync(inputList, op: op, timeout: timeout).wait()
    }
    /// Returns once every rank has reached the barrier.
    public func barrier(timeout: Duration? = nil) throws {
        try barrierAsync(timeout: timeout).wait()
    }
    /// Sends `tensor` to `dst` and returns once delivered.
    public func send(_ tensor: Tensor, to dst: Int, tag: Int = 0, timeout: Duration? = nil) throws {
        try sendAsync(tensor, to: dst, tag: tag, timeout: timeout).wait()
    }
    /// Receives a tensor shaped like `tensor` from `src`.
    public func recv(_ tensor: Tensor, from src: Int, tag: Int = 0, timeout: Duration? = nil) throws -> Tensor {
        try recvAsync(tensor, from: src, tag: tag, timeout: timeout).wait()
    }
    /// A subgroup of `ranks` with this group's timeout (nil on ranks outside it).
    public func newGroup(ranks: [Int]) throws -> (any ProcessGroup)? {
        try newGroup(ranks: ranks, timeout: nil)
    }
}
