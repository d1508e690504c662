import CGloo
import Foundation
import Glibc
import Synchronization
import TandemCore

/// A Gloo context pointer; used only under the transport's lock.
private struct ContextHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

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
    /// The context, the number of calls using it, and whether `close` was requested: the
    /// context is destroyed once no call uses it (point-to-point calls run concurrently).
    private let context: Mutex<(handle: ContextHandle?, inFlight: Int, closing: Bool)>

    /// Creates the context; `prefix` separates this group's keys in the store.
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
        let box = Unmanaged.passRetained(StoreBox(store))
        defer { box.release() }
        var callbacks = makeCallbacks(box.toOpaque())
        var out: OpaquePointer?
        var err = [CChar](repeating: 0, count: 4096)
        let rc = tg_gloo_create(&callbacks, prefix, Int32(rank), Int32(worldSize), timeout.milliseconds, iface, hostname, &out, &err, err.count)
        guard rc == 0, let out else {
            let message = text(err)
            throw TransportError(message: "Gloo rendezvous failed: \(message)", peer: nil, isTimeout: message.contains("imed out") || message.contains("timeout"))
        }
        context = Mutex((ContextHandle(pointer: out), 0, false))
    }

    private func call(_ body: (OpaquePointer, UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
        var err = [CChar](repeating: 0, count: 4096)
        let ctx = try context.withLock { c -> ContextHandle in
            guard let h = c.handle, !c.closing else { throw TransportError(message: "the Gloo context was closed", peer: nil) }
            c.inFlight += 1
            return h
        }
        let rc = err.withUnsafeMutableBufferPointer { body(ctx.pointer, $0.baseAddress!, $0.count) }
        let destroy = context.withLock { c -> ContextHandle? in
            c.inFlight -= 1
            guard c.closing, c.inFlight == 0, let h = c.handle else { return nil }
            c.handle = nil
            return h
        }
        if let destroy { tg_gloo_destroy(destroy.pointer) }
        if rc != 0 {
            let message = text(err)
            var peer = Self.peer(in: message)
            var text = message
            if peer == nil {
                // Ask the store which ranks have disconnected (a dead process closes its connection).
                let dead = deadWorldRanks(worldRanks[rank]).compactMap { worldRanks.firstIndex(of: $0) }.filter { $0 != rank }
                peer = dead.first
                if !dead.isEmpty { text += " (rank(s) \(dead.map(String.init).joined(separator: ", ")) of the group are gone)" }
            }
            throw TransportError(message: text, peer: peer, isTimeout: message.contains("Timed out") || message.contains("timed out"))
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
        try call { tg_gloo_allreduce($0, buffer.baseAddress, count, Self.code(dtype), Self.code(op), timeout.milliseconds, $1, $2) }
    }

    func reduce(_ buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp, root: Int, timeout: Duration) throws {
        guard count > 0 else { return }
        try call { tg_gloo_reduce($0, buffer.baseAddress, count, Self.code(dtype), Self.code(op), Int32(root), timeout.milliseconds, $1, $2) }
    }

    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int, timeout: Duration) throws {
        guard buffer.count > 0 else { return }
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
        let ctx = context.withLock { c -> ContextHandle? in
            c.closing = true
            guard c.inFlight == 0, let h = c.handle else { return nil }
            c.handle = nil
            return h
        }
        if let ctx { tg_gloo_destroy(ctx.pointer) }
    }

    deinit { close() }
}
