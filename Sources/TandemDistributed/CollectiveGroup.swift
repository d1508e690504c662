import Dispatch
import Foundation
import Synchronization
import TandemCore

/// The process group over any transport: validates arguments, runs operations in issue order
/// on a serial queue, converts transport failures into `DistributedError`s, and marks itself
/// broken after a failure (a Gloo context cannot be reused after an error).
final class CollectiveGroup: ProcessGroup {
    let transport: any Transport
    let name: String
    let timeout: Duration
    let signatureChecks: SignatureChecks
    /// Collectives issued so far (only touched on `queue`).
    private let issued = Mutex(0)
    private let queue: DispatchQueue
    private let broken = Mutex<String?>(nil)
    private let subgroupCount = Mutex(0)

    var rank: Int { transport.rank }
    var worldSize: Int { transport.worldSize }
    var backendName: String { transport.backendName }

    /// Which collectives all ranks compare before running them (op, dtype, shape, reduce op,
    /// root): a mismatch then fails at once naming both calls, instead of hanging until the
    /// timeout or reading another rank's bytes as its own.
    enum SignatureChecks: Equatable {
        /// `TANDEM_DISTRIBUTED_DEBUG=DETAIL`: every collective.
        case all
        /// The default: the first `first` collectives (a job's first steps), then every `every`-th.
        case sampled(first: Int, every: Int)
        /// `TANDEM_DISTRIBUTED_DEBUG=OFF`.
        case none

        static let `default` = SignatureChecks.sampled(first: 16, every: 128)

        static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> SignatureChecks {
            switch environment["TANDEM_DISTRIBUTED_DEBUG"]?.uppercased() {
            case "DETAIL": return .all
            case "OFF": return .none
            default: return .default
            }
        }

        /// Whether the `index`-th collective (from 0) is compared.
        func covers(_ index: Int) -> Bool {
            switch self {
            case .all: return true
            case .none: return false
            case let .sampled(first, every): return index < first || index % every == 0
            }
        }
    }

    init(transport: any Transport, name: String, timeout: Duration, signatureChecks: SignatureChecks? = nil) {
        self.transport = transport
        self.name = name
        self.timeout = timeout
        self.signatureChecks = signatureChecks ?? .fromEnvironment()
        self.queue = DispatchQueue(label: "tandem.distributed.\(name).rank\(transport.rank)")
    }

    // MARK: running operations

    /// Runs `body` on the group's serial queue (collectives, in issue order) or, for
    /// point-to-point operations (`serial: false`), on a thread of its own so that a send and
    /// the matching receive can both be pending.
    private func run<R: Sendable>(_ op: String, timeout: Duration?, signature: String?, serial: Bool = true,
                                  _ body: @escaping @Sendable (Duration) throws -> R) -> Work<R> {
        let work = Work<R>()
        let job: @Sendable () -> Void = { [self] in
            work.complete(Result { try execute(op, timeout: timeout, signature: signature, body) })
        }
        if serial {
            queue.async(execute: job)
        } else {
            Thread(block: job).start()
        }
        return work
    }

    /// Runs `body` now, on the caller's thread, in order with the queued operations.
    private func runInPlace(_ op: String, timeout: Duration?, signature: String?, _ body: (Duration) throws -> Void) throws {
        try queue.sync { try transport.whileCallerWaits { try execute(op, timeout: timeout, signature: signature, body) } }
    }

    /// Checks the group, runs `body`, and converts transport failures (marking the group broken).
    private func execute<R>(_ op: String, timeout: Duration?, signature: String?, _ body: (Duration) throws -> R) throws -> R {
        let t = timeout ?? self.timeout
        if let cause = broken.withLock({ $0 }) {
            throw DistributedError.groupBroken(operation: op, group: name, rank: rank, cause: cause)
        }
        do {
            if let signature {
                let index = issued.withLock { n -> Int in defer { n += 1 }; return n }
                if signatureChecks.covers(index) { try checkSignature(op, signature, index: index, timeout: t) }
            }
            return try body(t)
        } catch let e as TransportError {
            broken.withLock { $0 = $0 ?? "\(op): \(e.message)" }
            // With two ranks the failed peer can only be the other one.
            let peer = e.peer ?? (worldSize == 2 ? 1 - rank : nil)
            throw e.isTimeout
                ? DistributedError.timeout(operation: op, group: name, rank: rank, peer: peer, after: t)
                : DistributedError.collectiveFailed(operation: op, group: name, rank: rank, peer: peer, message: e.message)
        }
    }

    /// All ranks exchange what they are about to call (`signatureChecks`) and report the first
    /// mismatch instead of hanging.
    private func checkSignature(_ op: String, _ signature: String, index: Int, timeout: Duration) throws {
        let width = 256
        var mine = Array("#\(index + 1) \(op) \(signature)".utf8.prefix(width))
        mine += [UInt8](repeating: 0, count: width - mine.count)
        var all = [UInt8](repeating: 0, count: width * worldSize)
        try mine.withUnsafeBytes { i in try all.withUnsafeMutableBytes { o in try transport.allGather(i, o, timeout: timeout) } }
        let decoded = (0..<worldSize).map { r in
            String(decoding: all[(r * width)..<((r + 1) * width)].prefix { $0 != 0 }, as: UTF8.self)
        }
        if let bad = decoded.firstIndex(where: { $0 != decoded[0] }) {
            throw DistributedError.invalidArgument(
                operation: op,
                message: "collective mismatch in process group '\(name)': rank 0 called "
                    + "'\(decoded[0])' but rank \(bad) called '\(decoded[bad])'. Every rank must call the same collectives "
                    + "in the same order with the same shapes and dtypes (the number is the collective's position "
                    + "since the group started; TANDEM_DISTRIBUTED_DEBUG=DETAIL compares every collective, not a sample).")
        }
    }

    private func check(_ op: String, _ t: Tensor) throws {
        guard supportedDTypes.contains(t.dtype) else {
            throw DistributedError.invalidArgument(operation: op, message: "dtype \(t.dtype) is not supported; use float32, float64 or int64")
        }
    }

    private func checkRank(_ op: String, _ r: Int, _ what: String) throws {
        guard (0..<worldSize).contains(r) else {
            throw DistributedError.invalidArgument(
                operation: op, message: "\(what) \(r) is not a rank of process group '\(name)' (world size \(worldSize))")
        }
    }

    private func sig(_ t: Tensor, _ extra: String = "") -> String { "\(t.dtype) \(t.shape)\(extra)" }

    private func failed<R>(_ error: any Error) -> Work<R> { Work(completed: .failure(error)) }

    // MARK: collectives

    func allReduceAsync(_ tensor: consuming Tensor, op: ReduceOp, timeout: Duration?) -> Work<Tensor> {
        // The box hands the tensor to the operation, so that a caller who passes ownership
        // (`allReduceAsync(consume bucket)`) gets the reduction without a copy.
        let signature = sig(tensor, " \(op)")
        let box = TensorHandOff(consume tensor)
        return run("allReduce", timeout: timeout, signature: signature) { [self] t in
            var out = try box.take()
            try check("allReduce", out)
            let n = worldSize, count = out.count, dtype = out.dtype
            try withMutableBytes(&out) { buf in
                try transport.allReduce(buf, count: count, dtype: dtype, op: op, timeout: t)
                if op == .average { divideInPlace(buf, count: count, dtype: dtype, by: n) }
            }
            return out
        }
    }

    func allReduce(_ tensor: inout Tensor, op: ReduceOp, timeout: Duration?) throws {
        try check("allReduce", tensor)
        let n = worldSize, count = tensor.count, dtype = tensor.dtype
        try runInPlace("allReduce", timeout: timeout, signature: sig(tensor, " \(op)")) { t in
            try withMutableBytes(&tensor) { buf in
                try transport.allReduce(buf, count: count, dtype: dtype, op: op, timeout: t)
                if op == .average { divideInPlace(buf, count: count, dtype: dtype, by: n) }
            }
        }
    }

    func broadcast(_ tensor: inout Tensor, root: Int, timeout: Duration?) throws {
        try check("broadcast", tensor)
        try checkRank("broadcast", root, "root")
        try runInPlace("broadcast", timeout: timeout, signature: sig(tensor, " root=\(root)")) { t in
            try withMutableBytes(&tensor) { try transport.broadcast($0, root: root, timeout: t) }
        }
    }

    func reduceAsync(_ tensor: Tensor, root: Int, op: ReduceOp, timeout: Duration?) -> Work<Tensor> {
        run("reduce", timeout: timeout, signature: sig(tensor, " \(op) root=\(root)")) { [self] t in
            try check("reduce", tensor)
            try checkRank("reduce", root, "root")
            var out = tensor
            let n = worldSize, me = rank
            try withMutableBytes(&out) { buf in
                try transport.reduce(buf, count: tensor.count, dtype: tensor.dtype, op: op, root: root, timeout: t)
                if op == .average && me == root { divideInPlace(buf, count: tensor.count, dtype: tensor.dtype, by: n) }
            }
            return me == root ? out : tensor
        }
    }

    func broadcastAsync(_ tensor: Tensor, root: Int, timeout: Duration?) -> Work<Tensor> {
        run("broadcast", timeout: timeout, signature: sig(tensor, " root=\(root)")) { [self] t in
            try check("broadcast", tensor)
            try checkRank("broadcast", root, "root")
            var out = tensor
            try withMutableBytes(&out) { try transport.broadcast($0, root: root, timeout: t) }
            return out
        }
    }

    func allGatherAsync(_ tensor: Tensor, timeout: Duration?) -> Work<[Tensor]> {
        run("allGather", timeout: timeout, signature: sig(tensor)) { [self] t in
            try check("allGather", tensor)
            var all = Tensor.zeros([worldSize * tensor.count], dtype: tensor.dtype)
            try withBytes(tensor) { input in
                try withMutableBytes(&all) { try transport.allGather(input, $0, timeout: t) }
            }
            return try split(all, like: tensor)
        }
    }

    func gatherAsync(_ tensor: Tensor, root: Int, timeout: Duration?) -> Work<[Tensor]> {
        run("gather", timeout: timeout, signature: sig(tensor, " root=\(root)")) { [self] t in
            try check("gather", tensor)
            try checkRank("gather", root, "root")
            let isRoot = rank == root
            var all = Tensor.zeros([isRoot ? worldSize * tensor.count : 0], dtype: tensor.dtype)
            try withBytes(tensor) { input in
                try withMutableBytes(&all) { try transport.gather(input, isRoot ? $0 : nil, root: root, timeout: t) }
            }
            return isRoot ? try split(all, like: tensor) : []
        }
    }

    func scatterAsync(_ tensor: Tensor, scatterList: [Tensor], root: Int, timeout: Duration?) -> Work<Tensor> {
        run("scatter", timeout: timeout, signature: sig(tensor, " root=\(root)")) { [self] t in
            try check("scatter", tensor)
            try checkRank("scatter", root, "root")
            var out = tensor
            if rank == root {
                guard scatterList.count == worldSize,
                      scatterList.allSatisfy({ $0.shape == tensor.shape && $0.dtype == tensor.dtype }) else {
                    throw DistributedError.invalidArgument(
                        operation: "scatter",
                        message: "the root must pass \(worldSize) tensors of shape \(tensor.shape) and dtype \(tensor.dtype), got \(scatterList.map(\.shape))")
                }
                let flat = try Tensor.cat(scatterList.map { try $0.reshape([-1]) }, axis: 0)
                try withBytes(flat) { input in
                    try withMutableBytes(&out) { try transport.scatter(input, $0, root: root, timeout: t) }
                }
            } else {
                try withMutableBytes(&out) { try transport.scatter(nil, $0, root: root, timeout: t) }
            }
            return out
        }
    }

    func reduceScatterAsync(_ inputList: [Tensor], op: ReduceOp, timeout: Duration?) -> Work<Tensor> {
        let first = inputList.first ?? Tensor.zeros([0])
        return run("reduceScatter", timeout: timeout, signature: sig(first, " x\(inputList.count) \(op)")) { [self] t in
            try check("reduceScatter", first)
            guard inputList.count == worldSize,
                  inputList.allSatisfy({ $0.shape == first.shape && $0.dtype == first.dtype }) else {
                throw DistributedError.invalidArgument(
                    operation: "reduceScatter",
                    message: "pass \(worldSize) tensors of one shape and dtype (one per rank), got \(inputList.map(\.shape))")
            }
            var flat = try Tensor.cat(inputList.map { try $0.reshape([-1]) }, axis: 0)
            let n = worldSize, total = flat.count
            try withMutableBytes(&flat) { buf in
                try transport.allReduce(buf, count: total, dtype: first.dtype, op: op, timeout: t)
                if op == .average { divideInPlace(buf, count: total, dtype: first.dtype, by: n) }
            }
            return try split(flat, like: first)[rank]
        }
    }

    func barrierAsync(timeout: Duration?) -> Work<Void> {
        run("barrier", timeout: timeout, signature: "") { [self] t in try transport.barrier(timeout: t) }
    }

    func sendAsync(_ tensor: Tensor, to dst: Int, tag: Int, timeout: Duration?) -> Work<Void> {
        run("send", timeout: timeout, signature: nil, serial: false) { [self] t in
            try check("send", tensor)
            try checkRank("send", dst, "destination")
            guard dst != rank else { throw DistributedError.invalidArgument(operation: "send", message: "rank \(rank) cannot send to itself") }
            try withBytes(tensor) { try transport.send($0, to: dst, tag: tag, timeout: t) }
        }
    }

    func recvAsync(_ tensor: Tensor, from src: Int, tag: Int, timeout: Duration?) -> Work<Tensor> {
        run("recv", timeout: timeout, signature: nil, serial: false) { [self] t in
            try check("recv", tensor)
            try checkRank("recv", src, "source")
            guard src != rank else { throw DistributedError.invalidArgument(operation: "recv", message: "rank \(rank) cannot receive from itself") }
            var out = tensor
            try withMutableBytes(&out) { try transport.recv($0, from: src, tag: tag, timeout: t) }
            return out
        }
    }

    func newGroup(ranks: [Int], timeout: Duration?) throws -> (any ProcessGroup)? {
        let sorted = Array(Set(ranks)).sorted()
        guard !sorted.isEmpty, sorted.count == ranks.count, sorted.allSatisfy({ (0..<worldSize).contains($0) }) else {
            throw DistributedError.invalidArgument(
                operation: "newGroup", message: "ranks \(ranks) must be distinct ranks of process group '\(name)' (world size \(worldSize))")
        }
        let index = subgroupCount.withLock { n -> Int in n += 1; return n }
        let subName = "\(name).\(index)"
        let t = timeout ?? self.timeout
        // Runs in issue order with this group's collectives.
        let work: Work<(any Transport)?> = run("newGroup", timeout: t, signature: "\(sorted)") { [self] t in
            try transport.subTransport(ranks: sorted, name: subName, timeout: t)
        }
        guard let sub = try work.wait() else { return nil }
        return CollectiveGroup(transport: sub, name: subName, timeout: t, signatureChecks: signatureChecks)
    }

    func destroy() {
        queue.sync {
            broken.withLock { $0 = $0 ?? "the group was destroyed" }
            transport.close()
        }
    }

    deinit { transport.close() }

    private func split(_ flat: Tensor, like t: Tensor) throws -> [Tensor] {
        let n = worldSize
        if t.count == 0 { return Array(repeating: t, count: n) }
        return try flat.chunk(n, axis: 0).map { try $0.reshape(t.shape) }
    }
}

/// Passes a tensor to an asynchronous operation exactly once, dropping the box's reference.
final class TensorHandOff: Sendable {
    private let slot: Mutex<Tensor?>
    init(_ tensor: Tensor) { slot = Mutex(tensor) }
    func take() throws -> Tensor {
        guard let t = slot.withLock({ s -> Tensor? in defer { s = nil }; return s }) else {
            throw DistributedError.invalidArgument(operation: "collective", message: "internal: tensor taken twice")
        }
        return t
    }
}
