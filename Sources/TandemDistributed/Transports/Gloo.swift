import CGloo
import Foundation
import Glibc
import Synchronization
import TandemCore

private func text(_ a: [CChar]) -> String {
    String(decoding: a.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Boxes the store for Gloo's rendezvous callbacks.
private final class StoreBox {
    let store: any Store
    init(_ store: any Store) { self.store = store }
}

private func writeError(_ error: any Error, _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> Int32 {
    guard let err, errlen > 0 else { return 1 }
    let bytes = Array("\(error)".utf8.prefix(errlen - 1))
    for (i, b) in bytes.enumerated() { err[i] = CChar(bitPattern: b) }
    err[bytes.count] = 0
    return 1
}

private func makeCallbacks(_ ctx: UnsafeMutableRawPointer) -> tg_gloo_store {
    tg_gloo_store(
        ctx: ctx,
        set: { ctx, key, data, len, err, errlen in
            let box = Unmanaged<StoreBox>.fromOpaque(ctx!).takeUnretainedValue()
            do {
                let bytes = len == 0 ? [] : Array(UnsafeRawBufferPointer(start: data, count: len))
                try box.store.set(String(cString: key!), bytes)
                return 0
            } catch { return writeError(error, err, errlen) }
        },
        get: { ctx, key, data, len, err, errlen in
            let box = Unmanaged<StoreBox>.fromOpaque(ctx!).takeUnretainedValue()
            do {
                let value = try box.store.get(String(cString: key!), timeout: nil)
                let p = malloc(max(1, value.count))!
                value.withUnsafeBytes { if !$0.isEmpty { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
                data!.pointee = p
                len!.pointee = value.count
                return 0
            } catch { return writeError(error, err, errlen) }
        },
        wait: { ctx, keys, nkeys, timeoutMs, err, errlen in
            let box = Unmanaged<StoreBox>.fromOpaque(ctx!).takeUnretainedValue()
            do {
                let names = (0..<nkeys).map { String(cString: keys![$0]!) }
                try box.store.wait(names, timeout: .milliseconds(timeoutMs))
                return 0
            } catch { return writeError(error, err, errlen) }
        })
}

/// The Gloo transport (TCP): one Gloo context per process group, built by a full-mesh
/// rendezvous through Tandem's store. Calls are serialized by the owning group.
final class GlooTransport: Transport {
    let rank: Int
    let worldSize: Int
    var backendName: String { "gloo" }
    let store: any Store
    let iface: String
    let hostname: String
    /// World ranks of this group's members, in group-rank order.
    let worldRanks: [Int]
    /// Records that the given world rank saw a failure, then returns the world ranks known to
    /// be gone (no longer connected to the store) that did not themselves report one.
    let deadWorldRanks: @Sendable (Int) -> [Int]
    /// The contexts, the number of calls using them, and whether `close` was requested: the
    /// contexts are destroyed once no call uses them (point-to-point calls run concurrently).
    private let contexts: Mutex<(handles: Contexts?, inFlight: Int, closing: Bool)>
    /// The group's default timeout: the only one the synchronous context can apply.
    private let timeout: Duration

    /// All-reduces go through the synchronous context in pieces of at most this many bytes, and
    /// broadcasts up to this size: the smallest `localSyncMessageLimit` of all ranks, agreed on
    /// at creation.
    private let syncMessageLimit: Int

    /// Both ranks of a halving-doubling step send before they receive, so a message must fit a
    /// socket's send buffer, which the kernel caps at net.core.wmem_max (208 KB by default).
    static var localSyncMessageLimit: Int {
        let text = (try? String(contentsOfFile: "/proc/sys/net/core/wmem_max", encoding: .utf8)) ?? ""
        let wmemMax = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 212_992
        return min(max(wmemMax, 64 << 10), 4 << 20)
    }

    /// Two Gloo contexts over the same ranks. `async`: Gloo's event-loop thread reads the
    /// sockets and wakes the caller (Gloo's current algorithms; every operation). `sync`: the
    /// calling thread reads its sockets itself, which saves the thread hand-off on each of a
    /// small collective's round trips (see docs/BENCHMARKS.md, issue 4).
    /// All contexts of a process share one Gloo TCP device, hence one event-loop thread (see
    /// `sharedDevice` in CGloo.cpp).
    private struct Contexts: @unchecked Sendable {
        let async: OpaquePointer
        let sync: OpaquePointer

        func destroy() {
            tg_gloo_destroy(async)
            tg_gloo_destroy(sync)
        }
    }

    /// Whether a caller that only waits for its collective spins on its sockets (see
    /// `busyPollPolicy`), and whether the synchronous context spins now (changed under the
    /// owning group's serial queue only).
    private let busyPollWhenCallerWaits: Bool
    private let spinning = Mutex(false)

    /// Busy polling backs off when the waits are long: a wait that spun longer than
    /// `longWait` (a peer far behind, stopped or gone) makes the next `blockedCalls` waits block
    /// instead, so a rank does not burn its core for the whole wait of every later collective.
    /// (Within one wait Gloo keeps its mode: it holds the pair's lock while it reads.)
    struct SpinBackoff: Sendable {
        static let longWait: Duration = .milliseconds(100)
        static let blockedCalls = 64
        /// Waits left that block before spinning is tried again.
        var blockedLeft = 0

        /// Whether the next wait spins (and counts a blocked one).
        mutating func shouldSpin() -> Bool {
            if blockedLeft > 0 { blockedLeft -= 1; return false }
            return true
        }

        mutating func record(spunFor waited: Duration) {
            if waited > Self.longWait { blockedLeft = Self.blockedCalls }
        }
    }

    /// `TANDEM_GLOO_BUSY_POLL=1` makes a caller that waits for its collective spin on its
    /// sockets, `0` (the default) blocks; any other value throws. Spinning keeps a waiting
    /// rank's core awake, which is faster when every process has a core to itself (`tandem run`
    /// then sets 1; see docs/BENCHMARKS.md, issue 5) but takes the core any other job needs.
    static func busyPollPolicy(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Bool {
        switch environment["TANDEM_GLOO_BUSY_POLL"] {
        case "1": return true
        case nil, "", "0": return false
        case let value?:
            throw DistributedError.malformedEnvironment(variable: "TANDEM_GLOO_BUSY_POLL", value: value, expected: "1 (spin) or 0 (block)")
        }
    }

    /// Creates the contexts; `prefix` separates this group's keys in the store.
    init(store: any Store, prefix: String, rank: Int, worldSize: Int, timeout: Duration, iface: String, hostname: String,
         worldRanks: [Int]? = nil, deadWorldRanks: @escaping @Sendable (Int) -> [Int] = { _ in [] }) throws {
        tg_ignore_sigpipe()
        self.worldRanks = worldRanks ?? Array(0..<worldSize)
        self.deadWorldRanks = deadWorldRanks
        self.rank = rank
        self.worldSize = worldSize
        self.store = store
        self.iface = iface
        self.hostname = hostname
        self.timeout = timeout
        self.busyPollWhenCallerWaits = try Self.busyPollPolicy()
        let async = try Self.create(store: store, prefix: prefix, rank: rank, worldSize: worldSize, timeout: timeout,
                                    iface: iface, hostname: hostname, mode: Int32(TG_MODE_ASYNC))
        let sync: OpaquePointer
        do {
            sync = try Self.create(store: store, prefix: prefix + "/sync", rank: rank, worldSize: worldSize, timeout: timeout,
                                   iface: iface, hostname: hostname, mode: Int32(TG_MODE_SYNC))
        } catch {
            tg_gloo_destroy(async)
            throw error
        }
        var limit = Int64(Self.localSyncMessageLimit)
        var err = [CChar](repeating: 0, count: 4096)
        let rc = withUnsafeMutableBytes(of: &limit) {
            tg_gloo_allreduce(async, $0.baseAddress, 1, Int32(TG_DTYPE_I64), Int32(TG_OP_MIN), timeout.milliseconds, &err, err.count)
        }
        guard rc == 0 else {
            Contexts(async: async, sync: sync).destroy()
            throw TransportError(message: "Gloo setup failed: \(text(err))", peer: nil)
        }
        syncMessageLimit = Int(limit)
        contexts = Mutex((Contexts(async: async, sync: sync), 0, false))
    }

    private static func create(store: any Store, prefix: String, rank: Int, worldSize: Int, timeout: Duration,
                               iface: String, hostname: String, mode: Int32) throws -> OpaquePointer {
        let box = Unmanaged.passRetained(StoreBox(store))
        defer { box.release() }
        var callbacks = makeCallbacks(box.toOpaque())
        var out: OpaquePointer?
        var err = [CChar](repeating: 0, count: 4096)
        let rc = tg_gloo_create(&callbacks, prefix, Int32(rank), Int32(worldSize), timeout.milliseconds, iface, hostname, mode,
                                &out, &err, err.count)
        guard rc == 0, let out else {
            let message = text(err)
            throw TransportError(message: "Gloo rendezvous failed: \(message)", peer: nil, isTimeout: message.contains("imed out") || message.contains("timeout"))
        }
        return out
    }

    func whileCallerWaits<R>(_ body: () throws -> R) rethrows -> R {
        guard busyPollWhenCallerWaits, backoff.withLock({ $0.shouldSpin() }) else { return try body() }
        setSpinning(true)
        let start = ContinuousClock.now
        defer {
            setSpinning(false)
            let waited = ContinuousClock.now - start
            backoff.withLock { $0.record(spunFor: waited) }
        }
        return try body()
    }

    /// When spinning waits get long, the next waits block.
    private let backoff = Mutex(SpinBackoff())

    /// Switches the synchronous context between spinning and blocking reads (best effort: a
    /// context that failed keeps its mode and reports the failure on its next call).
    private func setSpinning(_ on: Bool) {
        guard spinning.withLock({ $0 }) != on else { return }
        var err = [CChar](repeating: 0, count: 256)
        guard withContexts({ tg_gloo_set_busy_poll($0.sync, on ? 1 : 0, &err, err.count) }) == 0 else { return }
        spinning.withLock { $0 = on }
    }

    /// Whether a collective of `bytes` with this `timeout` can use the synchronous context.
    private func fitsSync(bytes: Int, timeout: Duration) -> Bool {
        bytes <= syncMessageLimit && timeout == self.timeout
    }

    /// Runs `body` with the contexts, which stay alive until it returns (nil: closed).
    private func withContexts<R>(_ body: (Contexts) -> R) -> R? {
        guard let handles = contexts.withLock({ c -> Contexts? in
            guard let h = c.handles, !c.closing else { return nil }
            c.inFlight += 1
            return h
        }) else { return nil }
        let result = body(handles)
        let destroy = contexts.withLock { c -> Contexts? in
            c.inFlight -= 1
            guard c.closing, c.inFlight == 0, let h = c.handles else { return nil }
            c.handles = nil
            return h
        }
        destroy?.destroy()
        return result
    }

    private func call(sync: Bool = false, _ body: (OpaquePointer, UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
        var err = [CChar](repeating: 0, count: 4096)
        let code = withContexts { handles in
            err.withUnsafeMutableBufferPointer { body(sync ? handles.sync : handles.async, $0.baseAddress!, $0.count) }
        }
        guard let rc = code else { throw TransportError(message: "the Gloo context was closed", peer: nil) }
        if rc != 0 {
            // A failed context cannot be used again; closing its sockets now makes the ranks
            // blocked on this one fail at once rather than at their timeout.
            close()
            let message = text(err)
            var peer = Self.peer(in: message)
            var text = message
            // Ask the store which ranks have disconnected (a dead process closes its connection).
            // Asked even when Gloo named the peer: asking records that this rank saw the failure,
            // which the store's rank waits for before it exits.
            let dead = deadWorldRanks(worldRanks[rank]).compactMap { worldRanks.firstIndex(of: $0) }.filter { $0 != rank }
            if peer == nil {
                peer = dead.first
                if !dead.isEmpty { text += " (rank(s) \(dead.map(String.init).joined(separator: ", ")) of the group are gone)" }
            }
            let timedOut = message.contains("Timed out") || message.contains("timed out") || message.contains("Read timeout")
                || message.contains("Write timeout")
            throw TransportError(message: text, peer: peer, isTimeout: timedOut)
        }
    }

    /// Finds "rank N" in a Gloo message.
    private static func peer(in message: String) -> Int? {
        guard let r = message.range(of: "rank ") else { return nil }
        return Int(message[r.upperBound...].prefix { $0.isNumber })
    }

    private static func code(_ dtype: DType) -> Int32 {
        switch dtype {
        case .float64: return Int32(TG_DTYPE_F64)
        case .int64: return Int32(TG_DTYPE_I64)
        default: return Int32(TG_DTYPE_F32)
        }
    }

    private static func code(_ op: ReduceOp) -> Int32 {
        switch op {
        case .sum, .average: return Int32(TG_OP_SUM)
        case .product: return Int32(TG_OP_PRODUCT)
        case .min: return Int32(TG_OP_MIN)
        case .max: return Int32(TG_OP_MAX)
        }
    }

    func allReduce(_ buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp, timeout: Duration) throws {
        guard count > 0 else { return }
        if timeout == self.timeout {
            // Messages larger than the sockets' buffers go in pieces that fit them, which is
            // faster than Gloo's ring over its event loop (see docs/BENCHMARKS.md, issue 4).
            let piece = max(1, syncMessageLimit / dtype.byteSize)
            var start = 0
            while start < count {
                let n = min(piece, count - start)
                let base = buffer.baseAddress! + start * dtype.byteSize
                try call(sync: true) { tg_gloo_allreduce_sync($0, base, n, Self.code(dtype), Self.code(op), $1, $2) }
                start += n
            }
            return
        }
        try call { tg_gloo_allreduce($0, buffer.baseAddress, count, Self.code(dtype), Self.code(op), timeout.milliseconds, $1, $2) }
    }

    func reduce(_ buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp, root: Int, timeout: Duration) throws {
        guard count > 0 else { return }
        try call { tg_gloo_reduce($0, buffer.baseAddress, count, Self.code(dtype), Self.code(op), Int32(root), timeout.milliseconds, $1, $2) }
    }

    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int, timeout: Duration) throws {
        guard buffer.count > 0 else { return }
        if fitsSync(bytes: buffer.count, timeout: timeout) {
            return try call(sync: true) { tg_gloo_broadcast_sync($0, buffer.baseAddress, buffer.count, Int32(root), $1, $2) }
        }
        try call { tg_gloo_broadcast($0, buffer.baseAddress, buffer.count, Int32(root), timeout.milliseconds, $1, $2) }
    }

    func allGather(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, timeout: Duration) throws {
        guard input.count > 0 else { return }
        try call { tg_gloo_allgather($0, input.baseAddress, output.baseAddress, input.count, timeout.milliseconds, $1, $2) }
    }

    func gather(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer?, root: Int, timeout: Duration) throws {
        guard input.count > 0 else { return }
        try call { tg_gloo_gather($0, input.baseAddress, output?.baseAddress, input.count, Int32(root), timeout.milliseconds, $1, $2) }
    }

    func scatter(_ input: UnsafeRawBufferPointer?, _ output: UnsafeMutableRawBufferPointer, root: Int, timeout: Duration) throws {
        let n = output.count
        guard n > 0 else { return }
        var pointers: [UnsafeMutableRawPointer?] = []
        if let base = input?.baseAddress {
            pointers = (0..<worldSize).map { UnsafeMutableRawPointer(mutating: base + $0 * n) }
        }
        try pointers.withUnsafeBufferPointer { ptrs in
            try call { tg_gloo_scatter($0, ptrs.baseAddress, output.baseAddress, n, Int32(root), timeout.milliseconds, $1, $2) }
        }
    }

    func barrier(timeout: Duration) throws {
        try call { tg_gloo_barrier($0, timeout.milliseconds, $1, $2) }
    }

    func send(_ buffer: UnsafeRawBufferPointer, to dst: Int, tag: Int, timeout: Duration) throws {
        guard buffer.count > 0 else { return }
        do {
            try call { tg_gloo_send($0, buffer.baseAddress, buffer.count, Int32(dst), UInt32(truncatingIfNeeded: tag), timeout.milliseconds, $1, $2) }
        } catch var e as TransportError {
            e.peer = e.peer ?? dst
            throw e
        }
    }

    func recv(_ buffer: UnsafeMutableRawBufferPointer, from src: Int, tag: Int, timeout: Duration) throws {
        guard buffer.count > 0 else { return }
        do {
            try call { tg_gloo_recv($0, buffer.baseAddress, buffer.count, Int32(src), UInt32(truncatingIfNeeded: tag), timeout.milliseconds, $1, $2) }
        } catch var e as TransportError {
            e.peer = e.peer ?? src
            throw e
        }
    }

    func subTransport(ranks: [Int], name: String, timeout: Duration) throws -> (any Transport)? {
        guard let index = ranks.firstIndex(of: rank) else { return nil }
        return try GlooTransport(store: store, prefix: "gloo/\(name)", rank: index, worldSize: ranks.count,
                                 timeout: timeout, iface: iface, hostname: hostname,
                                 worldRanks: ranks.map { worldRanks[$0] }, deadWorldRanks: deadWorldRanks)
    }

    func close() {
        let handles = contexts.withLock { c -> Contexts? in
            c.closing = true
            guard c.inFlight == 0, let h = c.handles else { return nil }
            c.handles = nil
            return h
        }
        handles?.destroy()
    }

    deinit { close() }
}
