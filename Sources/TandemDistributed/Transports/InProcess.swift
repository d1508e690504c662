import Dispatch
import Foundation
import Synchronization
import TandemCore

/// An in-process backend: every rank is a thread (or task) of this process and collectives
/// exchange memory directly. For fast unit tests of code above the transport (DDP, samplers).
public enum InProcessGroup {
    /// Creates `worldSize` process groups that talk to each other in memory; element `i` is rank `i`.
    /// Use each from its own thread (or through the asynchronous forms).
    public static func makeWorld(worldSize: Int, timeout: Duration = defaultTimeout, name: String = "default") throws -> [any ProcessGroup] {
        guard worldSize >= 1 else {
            throw DistributedError.invalidArgument(operation: "InProcessGroup.makeWorld", message: "world size must be at least 1, got \(worldSize)")
        }
        let world = InProcessWorld(size: worldSize)
        return (0..<worldSize).map { r in
            CollectiveGroup(transport: InProcessTransport(world: world, rank: r, members: Array(0..<worldSize), name: name), name: name, timeout: timeout)
        }
    }
}

/// One rendezvous point: `participants` slots, filled once each.
final class ExchangeRound: Sendable {
    let arrived = DispatchGroup()
    let slots: Mutex<(data: [Data?], readers: Int)>
    init(participants: Int) {
        slots = Mutex((Array(repeating: nil, count: participants), 0))
        for _ in 0..<participants { arrived.enter() }
    }
}

/// Shared state of an in-process world: rendezvous rounds keyed by name.
final class InProcessWorld: Sendable {
    let size: Int
    private let rounds = Mutex<[String: ExchangeRound]>([:])
    init(size: Int) { self.size = size }

    /// Deposits `data` in slot `index` of round `key` and returns every slot once all
    /// `participants` have deposited, or throws naming the missing slots after `timeout`.
    func exchange(key: String, participants: Int, index: Int, data: Data, timeout: Duration) throws -> [Data] {
        let round = rounds.withLock { r in
            if let existing = r[key] { return existing }
            let new = ExchangeRound(participants: participants)
            r[key] = new
            return new
        }
        round.slots.withLock { $0.data[index] = data }
        round.arrived.leave()
        let deadline = DispatchTime.now() + .milliseconds(Int(timeout.milliseconds))
        if round.arrived.wait(timeout: deadline) == .timedOut {
            let missing = round.slots.withLock { s in s.data.indices.filter { s.data[$0] == nil } }
            throw TransportError(message: "rank(s) \(missing) did not arrive", peer: missing.first, isTimeout: true)
        }
        return round.slots.withLock { s in
            s.readers += 1
            if s.readers == participants { _ = rounds.withLock { $0.removeValue(forKey: key) } }
            return s.data.map { $0! }
        }
    }
}

/// The in-process transport of one rank: every collective is an all-to-all exchange of
/// byte copies, reduced locally. Simple rather than fast.
final class InProcessTransport: Transport {
    let world: InProcessWorld
    let rank: Int
    /// World ranks of this group's members, in group-rank order.
    let members: [Int]
    let name: String
    private let sequence = Mutex(0)
    private let p2pSequence = Mutex<[String: Int]>([:])
    private let subgroups = Mutex(0)

    var worldSize: Int { members.count }
    var backendName: String { "inprocess" }

    init(world: InProcessWorld, rank: Int, members: [Int], name: String) {
        self.world = world
        self.rank = rank
        self.members = members
        self.name = name
    }

    private func exchange(_ data: Data, timeout: Duration) throws -> [Data] {
        let seq = sequence.withLock { s -> Int in s += 1; return s }
        return try world.exchange(key: "\(name)/\(seq)", participants: worldSize, index: rank, data: data, timeout: timeout)
    }

    func allReduce(_ buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp, timeout: Duration) throws {
        let all = try exchange(Data(buffer), timeout: timeout)
        combine(all, into: buffer, count: count, dtype: dtype, op: op)
    }

    private func combine(_ all: [Data], into buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp) {
        all[0].withUnsafeBytes { buffer.copyMemory(from: $0) }
        for d in all.dropFirst() { d.withUnsafeBytes { reduceInPlace(buffer, $0, count: count, dtype: dtype, op: op) } }
    }

    func reduce(_ buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp, root: Int, timeout: Duration) throws {
        let all = try exchange(Data(buffer), timeout: timeout)
        if rank == root { combine(all, into: buffer, count: count, dtype: dtype, op: op) }
    }

    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int, timeout: Duration) throws {
        let all = try exchange(rank == root ? Data(buffer) : Data(), timeout: timeout)
        all[root].withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    func allGather(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, timeout: Duration) throws {
        let all = try exchange(Data(input), timeout: timeout)
        var joined = Data()
        for d in all { joined.append(d) }
        joined.withUnsafeBytes { output.copyMemory(from: $0) }
    }

    func gather(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer?, root: Int, timeout: Duration) throws {
        let all = try exchange(Data(input), timeout: timeout)
        if let output {
            var joined = Data()
            for d in all { joined.append(d) }
            joined.withUnsafeBytes { output.copyMemory(from: $0) }
        }
    }

    func scatter(_ input: UnsafeRawBufferPointer?, _ output: UnsafeMutableRawBufferPointer, root: Int, timeout: Duration) throws {
        let all = try exchange(input.map { Data($0) } ?? Data(), timeout: timeout)
        let n = output.count
        all[root].withUnsafeBytes { output.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[(rank * n)..<((rank + 1) * n)])) }
    }

    func barrier(timeout: Duration) throws {
        _ = try exchange(Data(), timeout: timeout)
    }

    private func p2pKey(from src: Int, to dst: Int, tag: Int) -> String {
        let pair = "\(name)/p2p/\(src)->\(dst)/\(tag)"
        let seq = p2pSequence.withLock { s -> Int in s[pair, default: 0] += 1; return s[pair]! }
        return "\(pair)/\(seq)"
    }

    func send(_ buffer: UnsafeRawBufferPointer, to dst: Int, tag: Int, timeout: Duration) throws {
        do {
            _ = try world.exchange(key: p2pKey(from: rank, to: dst, tag: tag), participants: 2, index: 0, data: Data(buffer), timeout: timeout)
        } catch let e as TransportError {
            throw TransportError(message: "rank \(dst) did not receive", peer: dst, isTimeout: e.isTimeout)
        }
    }

    func recv(_ buffer: UnsafeMutableRawBufferPointer, from src: Int, tag: Int, timeout: Duration) throws {
        do {
            let all = try world.exchange(key: p2pKey(from: src, to: rank, tag: tag), participants: 2, index: 1, data: Data(), timeout: timeout)
            guard all[0].count == buffer.count else {
                throw TransportError(message: "rank \(src) sent \(all[0].count) bytes, expected \(buffer.count)", peer: src)
            }
            all[0].withUnsafeBytes { buffer.copyMemory(from: $0) }
        } catch let e as TransportError where e.isTimeout {
            throw TransportError(message: "rank \(src) did not send", peer: src, isTimeout: true)
        }
    }

    func subTransport(ranks: [Int], name subName: String, timeout: Duration) throws -> (any Transport)? {
        guard let index = ranks.firstIndex(of: rank) else { return nil }
        return InProcessTransport(world: world, rank: index, members: ranks.map { members[$0] }, name: "\(subName)")
    }

    func close() {}
}
