import Dispatch
import Foundation
import Glibc
import Synchronization

/// The store's wire protocol: frames of `u32 length (little-endian)` + payload. A request's
/// payload is `u8 command` then arguments, each `u32 length` + bytes. A reply's payload is
/// `u8 status` (0 ok, 1 error) then arguments the same way. A server with a token accepts only
/// `auth(token)` as a connection's first request.
enum StoreWire {
    /// The largest frame an authenticated client may send (values are addresses and counters).
    static let maxFrame = 1 << 24
    /// The largest frame before authentication: room for a token, not for a flood.
    static let maxUnauthenticatedFrame = 1024
    /// Connections that have not presented the token yet, at most (the job's own, authenticated
    /// connections are not limited: two per rank); more are closed as they arrive.
    static let maxUnauthenticated = 256
    /// How long a connection may stay unauthenticated.
    static let authenticationWindow: Duration = .seconds(10)
    enum Command: UInt8 { case set = 1, get, add, compareSet, wait, check, delete, ping, setOwned, claim, auth }

    static func frame(_ head: UInt8, _ args: [[UInt8]]) -> [UInt8] {
        var payload: [UInt8] = [head]
        for a in args {
            payload += u32(a.count)
            payload += a
        }
        return u32(payload.count) + payload
    }

    static func u32(_ n: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(n).littleEndian, Array.init) }

    static func readU32<C: Collection<UInt8>>(_ b: C, at i: C.Index) -> Int {
        var v: UInt32 = 0
        var idx = i
        for shift in stride(from: 0, to: 32, by: 8) {
            v |= UInt32(b[idx]) << UInt32(shift)
            idx = b.index(after: idx)
        }
        return Int(v)
    }

    /// Parses a payload into (head, args); nil if malformed.
    static func parse(_ p: ArraySlice<UInt8>) -> (UInt8, [[UInt8]])? {
        guard let head = p.first else { return nil }
        var args = [[UInt8]]()
        var i = p.startIndex + 1
        while i < p.endIndex {
            guard p.endIndex - i >= 4 else { return nil }
            let n = readU32(p, at: i)
            i += 4
            guard p.endIndex - i >= n else { return nil }
            args.append(Array(p[i..<(i + n)]))
            i += n
        }
        return (head, args)
    }
}

/// The server side of `TCPStore`: one thread polling every client. Malformed frames and closed
/// connections only drop that client.
final class StoreServer: Sendable {
    let port: Int
    private let listenFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let finished = DispatchSemaphore(value: 0)
    private let stopped = Mutex(false)

    /// The address the server listens on.
    let host: String

    /// Listens on `host:port`; with `anyAddressIfNotLocal`, on every interface when `host` is
    /// not an address of this machine.
    init(host: String, port: Int, token: [UInt8]?, anyAddressIfNotLocal: Bool = false) throws {
        var host = host
        let l: (fd: Int32, port: Int)
        do {
            do {
                l = try Sockets.listen(host: host, port: port)
            } catch let f as Sockets.Failure where anyAddressIfNotLocal && (f.code == EADDRNOTAVAIL || f.code == -1) {
                host = "0.0.0.0"
                l = try Sockets.listen(host: host, port: port)
            }
        } catch let f as Sockets.Failure {
            if f.code == EADDRINUSE { throw DistributedError.addressInUse(host: host, port: port) }
            throw DistributedError.store(operation: "serve", message: "cannot serve on \(host):\(port): \(f.message)")
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            close(l.fd)
            throw DistributedError.store(operation: "serve", message: "pipe: \(Sockets.errorText())")
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC); _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
        self.host = host
        listenFD = l.fd
        self.port = l.port
        wakeRead = fds[0]
        wakeWrite = fds[1]
        let loop = ServerLoop(listenFD: listenFD, wakeFD: wakeRead, token: token)
        let done = finished
        let thread = Thread {
            var state = loop
            state.run()
            done.signal()
        }
        thread.name = "tandem.store.server"
        thread.start()
    }

    func stop() {
        let first = stopped.withLock { s -> Bool in defer { s = true }; return !s }
        guard first else { return }
        var b: UInt8 = 1
        _ = write(wakeWrite, &b, 1)
        finished.wait()
        close(listenFD)
        close(wakeRead)
        close(wakeWrite)
    }

    deinit { stop() }
}

/// The server's state, owned by its thread.
struct ServerLoop {
    let listenFD: Int32
    let wakeFD: Int32
    /// The job's token; nil: every connection may send requests at once.
    let token: [UInt8]?
    /// Connections that presented the token (all of them without a token), and when the others arrived.
    var authenticated: Set<Int32> = []
    var arrived: [Int32: ContinuousClock.Instant] = [:]
    var data: [[UInt8]: [UInt8]] = [:]
    var inbound: [Int32: [UInt8]] = [:]
    /// Clients waiting for keys; `getKey` set for a get (reply with the value).
    var waiters: [(fd: Int32, keys: [[UInt8]], getKey: [UInt8]?)] = []
    /// Keys set with `setOwned`, deleted when their client disconnects (liveness of ranks).
    var owned: [Int32: [[UInt8]]] = [:]

    init(listenFD: Int32, wakeFD: Int32, token: [UInt8]?) {
        self.listenFD = listenFD
        self.wakeFD = wakeFD
        self.token = token
    }

    mutating func run() {
        while true {
            let clients = Array(inbound.keys)
            let fds = [wakeFD, listenFD] + clients
            let ready = Sockets.pollInput(fds, timeoutMs: 1000)
            if ready[0] != 0 { break }
            if ready[1] != 0, let c = Sockets.accept(listenFD) {
                if arrived.count >= StoreWire.maxUnauthenticated {
                    close(c)
                } else {
                    inbound[c] = []
                    if token == nil { authenticated.insert(c) } else { arrived[c] = .now }
                }
            }
            // Connections that never authenticate are closed.
            let late = arrived.filter { ContinuousClock.now - $0.value > StoreWire.authenticationWindow }.map(\.key)
            for fd in late { drop(fd) }
            for (i, fd) in clients.enumerated() where ready[i + 2] != 0 {
                guard let bytes = Sockets.recvAvailable(fd) else { drop(fd); continue }
                inbound[fd, default: []] += bytes
                processFrames(fd)
            }
        }
        for fd in inbound.keys { close(fd) }
    }

    mutating func drop(_ fd: Int32) {
        guard inbound.removeValue(forKey: fd) != nil else { return }
        authenticated.remove(fd)
        arrived[fd] = nil
        waiters.removeAll { $0.fd == fd }
        for key in owned.removeValue(forKey: fd) ?? [] { data[key] = nil }
        close(fd)
    }

    mutating func processFrames(_ fd: Int32) {
        while let buf = inbound[fd], buf.count >= 4 {
            let n = StoreWire.readU32(buf, at: 0)
            let limit = authenticated.contains(fd) ? StoreWire.maxFrame : StoreWire.maxUnauthenticatedFrame
            guard n > 0, n <= limit else { drop(fd); return }
            guard buf.count >= 4 + n else { return }
            let payload = buf[4..<(4 + n)]
            inbound[fd] = Array(buf[(4 + n)...])
            guard let (head, args) = StoreWire.parse(payload) else { drop(fd); return }
            handle(fd, head, args)
        }
    }

    mutating func reply(_ fd: Int32, ok: Bool = true, _ args: [[UInt8]]) {
        do {
            try Sockets.sendAll(fd, StoreWire.frame(ok ? 0 : 1, args), deadline: .now + .seconds(2))
        } catch {
            drop(fd)
        }
    }

    mutating func error(_ fd: Int32, _ message: String) { reply(fd, ok: false, [Array(message.utf8)]) }

    mutating func handle(_ fd: Int32, _ head: UInt8, _ args: [[UInt8]]) {
        let cmd = StoreWire.Command(rawValue: head)
        // Before the token, a connection gets one answer at most (then it is closed), so a
        // stranger cannot pile up replies that block this thread.
        guard cmd == .auth || authenticated.contains(fd) else {
            error(fd, "this store needs the job's token first (TANDEM_STORE_TOKEN)")
            return drop(fd)
        }
        guard let cmd else { return error(fd, "unknown command \(head)") }
        if cmd == .auth {
            guard let token else { return reply(fd, []) }
            guard args.count == 1, constantTimeEqual(args[0], token) else {
                error(fd, "wrong token: this client is not part of the job (set TANDEM_STORE_TOKEN to the job's token)")
                return drop(fd)
            }
            authenticated.insert(fd)
            arrived[fd] = nil
            return reply(fd, [])
        }
        switch cmd {
        case .auth:
            break
        case .ping:
            reply(fd, [])
        case .set:
            guard args.count == 2 else { return error(fd, "set takes a key and a value") }
            data[args[0]] = args[1]
            reply(fd, [])
            wakeWaiters()
        case .setOwned:
            guard args.count == 2 else { return error(fd, "setOwned takes a key and a value") }
            data[args[0]] = args[1]
            owned[fd, default: []].append(args[0])
            reply(fd, [])
            wakeWaiters()
        case .claim:
            // Sets an absent key, owned by this client (deleted when it disconnects); replies
            // with the key's value afterwards, so the caller sees whether the claim was its own.
            guard args.count == 2 else { return error(fd, "claim takes a key and a value") }
            if let current = data[args[0]] { return reply(fd, [current]) }
            data[args[0]] = args[1]
            owned[fd, default: []].append(args[0])
            reply(fd, [args[1]])
            wakeWaiters()
        case .get:
            guard args.count == 1 else { return error(fd, "get takes one key") }
            if let v = data[args[0]] { reply(fd, [v]) } else { waiters.append((fd, [args[0]], args[0])) }
        case .add:
            guard args.count == 2, args[1].count == 8 else { return error(fd, "add takes a key and an 8-byte integer") }
            let amount = args[1].withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
            var current: Int64 = 0
            if let v = data[args[0]] {
                guard let n = Int64(String(decoding: v, as: UTF8.self)) else { return error(fd, "the key does not hold an integer") }
                current = n
            }
            let new = current &+ amount
            data[args[0]] = Array(String(new).utf8)
            reply(fd, [withUnsafeBytes(of: new.littleEndian, Array.init)])
            wakeWaiters()
        case .compareSet:
            guard args.count == 3 else { return error(fd, "compareSet takes a key, an expected and a desired value") }
            let current = data[args[0]]
            if (current == nil && args[1].isEmpty) || current == args[1] {
                data[args[0]] = args[2]
                reply(fd, [args[2]])
                wakeWaiters()
            } else {
                reply(fd, [current ?? []])
            }
        case .wait:
            if args.allSatisfy({ data[$0] != nil }) { reply(fd, []) } else { waiters.append((fd, args, nil)) }
        case .check:
            reply(fd, [[args.allSatisfy { data[$0] != nil } ? 1 : 0]])
        case .delete:
            guard args.count == 1 else { return error(fd, "delete takes one key") }
            reply(fd, [[data.removeValue(forKey: args[0]) != nil ? 1 : 0]])
        }
    }

    /// Compares without stopping at the first difference (the time says nothing about the token).
    func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    mutating func wakeWaiters() {
        let ready = waiters.filter { w in w.keys.allSatisfy { data[$0] != nil } }
        guard !ready.isEmpty else { return }
        waiters.removeAll { w in w.keys.allSatisfy { data[$0] != nil } }
        for w in ready {
            if let k = w.getKey { reply(w.fd, [data[k] ?? []]) } else { reply(w.fd, []) }
        }
    }
}

/// A TCP key-value store like PyTorch's `TCPStore`: the server (rank 0) listens on
/// `host:port`; every process, the server's included, talks to it as a client.
public final class TCPStore: Store {
    /// The master's host name or address.
    public let host: String
    /// The port (the actual one when the server was created with port 0).
    public let port: Int
    /// The default timeout of blocking calls (and of connecting).
    public let timeout: Duration
    private let server: StoreServer?
    /// True in the process that serves the store (rank 0).
    public var isServer: Bool { server != nil }
    /// The address the server listens on (nil in a client).
    var listeningAddress: String? { server?.host }
    private let connection = Mutex<Int32>(-1)
    /// Keys this client owns (re-registered after a reconnect).
    private let ownedKeys = Mutex<[String: (value: [UInt8], claimed: Bool)]>([:])

    /// The job's token, sent first on every connection (nil: none).
    private let token: [UInt8]?

    /// Connects to (and with `isServer`, first serves) a store on `host:port`. A client retries
    /// connecting until `connectTimeout` (default `timeout`), saying every 10 s on standard
    /// error that it waits. The server listens on 127.0.0.1 when `host` is a loopback address,
    /// else on `host` itself (every interface when `host` is no address of this machine, or a
    /// name that resolves to loopback only here); port
    /// 0 picks a free port. With a `token` (default: `TANDEM_STORE_TOKEN`), the server answers
    /// only clients that present it, and this client presents it.
    public init(host: String, port: Int, isServer: Bool, timeout: Duration = defaultTimeout,
                connectTimeout: Duration? = nil,
                token: String? = ProcessInfo.processInfo.environment["TANDEM_STORE_TOKEN"]) throws {
        guard (0...65535).contains(port) else {
            throw DistributedError.invalidArgument(operation: "TCPStore", message: "port \(port) is not in 0...65535")
        }
        self.host = host
        self.timeout = timeout
        self.token = token.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        if isServer {
            let s = isLoopback(host)
                ? try StoreServer(host: "127.0.0.1", port: port, token: self.token)
                // A name that resolves to loopback here (its /etc/hosts line) reaches this machine
                // elsewhere through another address: listen on every interface.
                : try StoreServer(host: Sockets.resolvesToLoopback(host) ? "0.0.0.0" : host, port: port, token: self.token,
                                  anyAddressIfNotLocal: true)
            server = s
            self.port = s.port
        } else {
            server = nil
            self.port = port
        }
        try connection.withLock { fd in fd = try connect(deadline: .now + (connectTimeout ?? timeout), reporting: !isServer) }
    }

    deinit {
        connection.withLock { fd in if fd >= 0 { close(fd) } }
        server?.stop()
    }

    /// Stops the server (if this process serves) and closes the connection.
    public func shutdown() {
        connection.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
        server?.stop()
    }

    private func connect(deadline: ContinuousClock.Instant, reporting: Bool = false) throws -> Int32 {
        let start = ContinuousClock.now
        var last = ""
        var nextReport = start + .seconds(10)
        while true {
            if reporting && ContinuousClock.now >= nextReport {
                report("tandem: waiting for the rendezvous store at \(host):\(port) (rank 0) for \(format(ContinuousClock.now - start)) "
                       + "(\(last)); giving up after \(format(deadline - start)) (TANDEM_RENDEZVOUS_TIMEOUT)")
                nextReport = ContinuousClock.now + .seconds(10)
            }
            do {
                let fd = try Sockets.connect(host: host, port: port, deadline: min(deadline, .now + .seconds(2)))
                if let token { try authenticate(fd, token, deadline: deadline) }
                return fd
            } catch let f as Sockets.Failure {
                last = f.message
                if f.code == -1 { throw DistributedError.unreachable(host: host, port: port, after: .zero, message: f.message) }
            }
            if ContinuousClock.now >= deadline {
                throw DistributedError.unreachable(host: host, port: port, after: ContinuousClock.now - start, message: last)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Presents the job's token on a new connection; a refusal is final (another job's store).
    private func authenticate(_ fd: Int32, _ token: [UInt8], deadline: ContinuousClock.Instant) throws {
        do {
            try Sockets.sendAll(fd, StoreWire.frame(StoreWire.Command.auth.rawValue, [token]), deadline: deadline)
            let n = StoreWire.readU32(try Sockets.recvExactly(fd, 4, deadline: deadline), at: 0)
            guard n > 0, n <= StoreWire.maxFrame, let (status, _) = StoreWire.parse(try Sockets.recvExactly(fd, n, deadline: deadline)[...]),
                  status == 0 else {
                close(fd)
                throw DistributedError.store(operation: "auth", message: "the store at \(host):\(port) refused this process's token. "
                    + "Every rank of a job needs the same TANDEM_STORE_TOKEN (tandem run sets it on one node; set it yourself on several)")
            }
        } catch let f as Sockets.Failure {
            close(fd)
            throw f
        }
    }

    private func request(_ op: String, _ cmd: StoreWire.Command, _ args: [[UInt8]], timeout: Duration? = nil, keys: [String] = []) throws -> [[UInt8]] {
        let t = timeout ?? self.timeout
        let deadline = ContinuousClock.now + t
        return try connection.withLock { fd -> [[UInt8]] in
            do {
                if fd < 0 {
                    fd = try connect(deadline: deadline)
                    // Owned keys went with the old connection: set them again, and claim the
                    // claimed ones again (another process may have claimed one meanwhile).
                    for (key, owned) in ownedKeys.withLock({ $0 }) {
                        let command = owned.claimed ? StoreWire.Command.claim : .setOwned
                        try Sockets.sendAll(fd, StoreWire.frame(command.rawValue, [Array(key.utf8), owned.value]), deadline: deadline)
                        let n = StoreWire.readU32(try Sockets.recvExactly(fd, 4, deadline: deadline), at: 0)
                        guard n > 0, n <= StoreWire.maxFrame else { throw Sockets.Failure(message: "malformed reply", code: EPROTO) }
                        let reply = StoreWire.parse(try Sockets.recvExactly(fd, n, deadline: deadline)[...])
                        if owned.claimed, reply?.1.first != owned.value {
                            throw DistributedError.store(operation: op, message: "'\(key)' was claimed by another process while this one "
                                + "was disconnected from \(host):\(port); two processes are running as the same rank")
                        }
                    }
                }
                try Sockets.sendAll(fd, StoreWire.frame(cmd.rawValue, args), deadline: deadline)
                let n = StoreWire.readU32(try Sockets.recvExactly(fd, 4, deadline: deadline), at: 0)
                guard n > 0, n <= StoreWire.maxFrame else {
                    throw Sockets.Failure(message: "malformed reply (length \(n))", code: EPROTO)
                }
                let payload = try Sockets.recvExactly(fd, n, deadline: deadline)
                guard let (status, out) = StoreWire.parse(payload[...]) else {
                    throw Sockets.Failure(message: "malformed reply", code: EPROTO)
                }
                if status != 0 {
                    throw DistributedError.store(operation: op, message: String(decoding: out.first ?? [], as: UTF8.self))
                }
                return out
            } catch let f as Sockets.Failure {
                close(fd)
                fd = -1
                if f.code == ETIMEDOUT {
                    let what = keys.isEmpty ? "" : " waiting for key(s) \(keys)"
                    throw DistributedError.store(
                        operation: op,
                        message: "timed out after \(format(t))\(what) at \(host):\(port). Check that every rank has started and uses the same master address and port")
                }
                throw DistributedError.store(
                    operation: op,
                    message: "connection to \(host):\(port) failed: \(f.message). The process serving the store (rank 0) may have exited")
            }
        }
    }

    /// Sets `key` to `value`.
    public func set(_ key: String, _ value: [UInt8]) throws {
        _ = try request("set", .set, [Array(key.utf8), value])
    }

    /// Sets `key` to `value` for as long as this client stays connected: the server deletes it
    /// when the connection closes (a rank's liveness).
    public func setOwned(_ key: String, _ value: [UInt8]) throws {
        ownedKeys.withLock { $0[key] = (value, false) }
        _ = try request("setOwned", .setOwned, [Array(key.utf8), value])
    }

    /// Claims `key` for this client: sets it to `value` if it is absent, owned by this
    /// connection (the server deletes it when the connection closes, e.g. when the process
    /// dies). Returns true when the key is now this client's.
    public func claim(_ key: String, _ value: [UInt8]) throws -> Bool {
        let after = try request("claim", .claim, [Array(key.utf8), value]).first ?? []
        guard after == value else { return false }
        ownedKeys.withLock { $0[key] = (value, true) }
        return true
    }

    /// `add` with its own timeout (the heartbeat's).
    func add(_ key: String, _ amount: Int64, timeout: Duration) throws -> Int64 {
        let r = try request("add", .add, [Array(key.utf8), withUnsafeBytes(of: amount.littleEndian, Array.init)], timeout: timeout)
        guard let b = r.first, b.count == 8 else { throw DistributedError.store(operation: "add", message: "malformed reply") }
        return b.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
    }

    /// `check` with its own timeout.
    func check(_ keys: [String], timeout: Duration) throws -> Bool {
        try request("check", .check, keys.map { Array($0.utf8) }, timeout: timeout).first == [1]
    }

    /// Waits until `key` is set and returns its value.
    public func get(_ key: String, timeout: Duration?) throws -> [UInt8] {
        let r = try request("get", .get, [Array(key.utf8)], timeout: timeout, keys: [key])
        return r.first ?? []
    }

    /// Adds `amount` to the integer at `key`; returns the new value.
    public func add(_ key: String, _ amount: Int64) throws -> Int64 {
        let r = try request("add", .add, [Array(key.utf8), withUnsafeBytes(of: amount.littleEndian, Array.init)])
        guard let b = r.first, b.count == 8 else { throw DistributedError.store(operation: "add", message: "malformed reply") }
        return b.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
    }

    /// Compare-and-set; returns the value after the call.
    public func compareSet(_ key: String, expected: [UInt8], desired: [UInt8]) throws -> [UInt8] {
        try request("compareSet", .compareSet, [Array(key.utf8), expected, desired]).first ?? []
    }

    /// Waits until every key in `keys` is set.
    public func wait(_ keys: [String], timeout: Duration?) throws {
        _ = try request("wait", .wait, keys.map { Array($0.utf8) }, timeout: timeout, keys: keys)
    }

    /// True if every key in `keys` is set.
    public func check(_ keys: [String]) throws -> Bool {
        try request("check", .check, keys.map { Array($0.utf8) }).first == [1]
    }

    /// Deletes `key`; true if it existed.
    public func deleteKey(_ key: String) throws -> Bool {
        try request("delete", .delete, [Array(key.utf8)]).first == [1]
    }
}
