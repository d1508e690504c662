import Foundation
import Glibc

/// A collective backend for `initProcessGroup`.
public enum Backend: String, Sendable, CaseIterable {
    /// Gloo over TCP (the default on CPU).
    case gloo
    /// OpenMPI, for jobs started by `mpirun`/`srun`: rank and world size come from MPI, the
    /// init method is ignored, and MPI has no per-operation timeouts (a dead rank makes
    /// `mpirun` abort the job). Destroying the default group finalizes MPI.
    case mpi
}

/// The rendezvous parameters resolved from an init method and the environment.
public struct RendezvousInfo: Sendable, Equatable {
    /// This process's rank.
    public var rank: Int
    /// The number of processes.
    public var worldSize: Int
    /// `tcp` (host and port set) or `file` (path set).
    public var kind: String
    /// The master's host for `tcp://` and `env://`.
    public var host: String = ""
    /// The master's port for `tcp://` and `env://`.
    public var port: Int = 0
    /// The shared file for `file://`.
    public var path: String = ""
    /// This process's rank on its node (LOCAL_RANK), when the launcher set it.
    public var localRank: Int? = nil

    /// Creates rendezvous parameters.
    public init(rank: Int, worldSize: Int, kind: String, host: String = "", port: Int = 0, path: String = "", localRank: Int? = nil) {
        self.localRank = localRank
        self.rank = rank
        self.worldSize = worldSize
        self.kind = kind
        self.host = host
        self.port = port
        self.path = path
    }
}

/// Resolves `initMethod` (`env://`, `tcp://HOST:PORT`, `file:///path`) with explicit `rank` and
/// `worldSize` (which win over the environment). Throws a typed error naming a missing or
/// malformed variable. `environment` defaults to the process's.
public func resolveRendezvous(initMethod: String, rank: Int?, worldSize: Int?,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws -> RendezvousInfo {
    func int(_ name: String, fallbacks: [String], hint: String) throws -> Int {
        for key in [name] + fallbacks {
            guard let raw = environment[key] else { continue }
            guard let v = Int(raw.trimmingCharacters(in: .whitespaces)), v >= 0 else {
                throw DistributedError.malformedEnvironment(variable: key, value: raw, expected: "a non-negative integer")
            }
            return v
        }
        throw DistributedError.missingEnvironment(variable: name, hint: hint)
    }
    let launcherHint = "Start the job with `tandem run`, which sets it, or export it yourself."
    let r = try rank ?? int("RANK", fallbacks: ["SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"], hint: launcherHint)
    let w = try worldSize ?? int("WORLD_SIZE", fallbacks: ["SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"], hint: launcherHint)
    guard w >= 1 else {
        throw DistributedError.invalidArgument(operation: "initProcessGroup", message: "world size must be at least 1, got \(w)")
    }
    guard (0..<w).contains(r) else {
        throw DistributedError.invalidArgument(
            operation: "initProcessGroup",
            message: "rank \(r) is not below world size \(w); ranks run from 0 to \(w - 1). Check RANK/WORLD_SIZE (or the rank: and worldSize: arguments)")
    }
    var localRank: Int?
    if let raw = environment["LOCAL_RANK"] ?? environment["OMPI_COMM_WORLD_LOCAL_RANK"] ?? environment["SLURM_LOCALID"] {
        guard let v = Int(raw.trimmingCharacters(in: .whitespaces)), v >= 0 else {
            throw DistributedError.malformedEnvironment(variable: "LOCAL_RANK", value: raw, expected: "a non-negative integer")
        }
        localRank = v
    }
    if initMethod == "env://" {
        guard let host = environment["MASTER_ADDR"], !host.isEmpty else {
            throw DistributedError.missingEnvironment(variable: "MASTER_ADDR", hint: "Set it to the address of the machine running rank 0 (127.0.0.1 on one machine). " + launcherHint)
        }
        guard let rawPort = environment["MASTER_PORT"] else {
            throw DistributedError.missingEnvironment(variable: "MASTER_PORT", hint: "Set it to a free TCP port on the machine running rank 0, e.g. 29500. " + launcherHint)
        }
        guard let port = Int(rawPort), (1...65535).contains(port) else {
            throw DistributedError.malformedEnvironment(variable: "MASTER_PORT", value: rawPort, expected: "a port number in 1...65535")
        }
        return RendezvousInfo(rank: r, worldSize: w, kind: "tcp", host: host, port: port, localRank: localRank)
    }
    if initMethod.hasPrefix("tcp://") {
        let rest = initMethod.dropFirst("tcp://".count)
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port),
              colon != rest.startIndex else {
            throw DistributedError.invalidInitMethod(initMethod, message: "expected tcp://HOST:PORT with a port in 1...65535")
        }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return RendezvousInfo(rank: r, worldSize: w, kind: "tcp", host: host, port: port, localRank: localRank)
    }
    if initMethod.hasPrefix("file://") {
        let path = String(initMethod.dropFirst("file://".count))
        guard path.hasPrefix("/") else {
            throw DistributedError.invalidInitMethod(initMethod, message: "expected an absolute path, file:///path/to/file")
        }
        return RendezvousInfo(rank: r, worldSize: w, kind: "file", path: path, localRank: localRank)
    }
    throw DistributedError.invalidInitMethod(initMethod, message: "unknown scheme")
}

/// The network interface Gloo binds, from TANDEM_SOCKET_IFNAME or GLOO_SOCKET_IFNAME (nil:
/// none set). Throws `interfaceNotFound` when the named interface does not exist.
public func socketInterface(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
    for variable in ["TANDEM_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"] {
        guard let name = environment[variable], !name.isEmpty else { continue }
        if if_nametoindex(name) == 0 {
            let available = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/net"))?.sorted() ?? []
            throw DistributedError.interfaceNotFound(name: name, variable: variable, available: available)
        }
        return name
    }
    return nil
}

func isLoopback(_ host: String) -> Bool {
    host == "localhost" || host.hasPrefix("127.") || host == "::1"
}

/// Starts the default process group, like `torch.distributed.init_process_group`.
///
/// - Parameters:
///   - backend: the collective engine (`.gloo`, or `.mpi` under `mpirun`).
///   - initMethod: `env://` (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as set by
///     `tandem run`; Slurm's and OpenMPI's rank variables also work), `tcp://HOST:PORT`
///     (rank 0 serves the store there) or `file:///path` (a fresh shared file).
///   - rank: this process's rank (nil: from the environment).
///   - worldSize: the number of processes (nil: from the environment).
///   - timeout: the timeout of every operation (nil: `TANDEM_TIMEOUT` seconds, else 30
///     minutes). The rendezvous waits at most `TANDEM_RENDEZVOUS_TIMEOUT` (10 minutes) of it,
///     and a rank silent for `TANDEM_HEARTBEAT_TIMEOUT` (20 s) ends the job (`DistributedTimeouts`).
/// - Throws: `DistributedError` naming what to fix; no call waits longer than `timeout`.
public func initProcessGroup(backend: Backend = .gloo, initMethod: String = "env://", rank: Int? = nil,
                             worldSize: Int? = nil, timeout: Duration? = nil) throws -> any ProcessGroup {
    let timeouts = try DistributedTimeouts.resolve(operation: timeout)
    let timeout = timeouts.operation
    if backend == .mpi {
        // Rank and world size come from mpirun/srun; the init method is not used.
        return CollectiveGroup(transport: try MPITransport.world(), name: "default", timeout: timeout)
    }
    let info = try resolveRendezvous(initMethod: initMethod, rank: rank, worldSize: worldSize)
    let iface = try socketInterface()
    let store: any Store
    let hostname: String
    if info.kind == "file" {
        store = try FileStore(path: info.path, timeout: timeout)
        hostname = "127.0.0.1"
    } else {
        store = try TCPStore(host: info.host, port: info.port, isServer: info.rank == 0, timeout: timeout,
                             connectTimeout: timeouts.rendezvous)
        // Without an interface, Gloo binds the local address that routes to the master.
        if isLoopback(info.host) {
            hostname = "127.0.0.1"
        } else if let local = Sockets.localAddress(routingTo: info.host, port: info.port) {
            hostname = local
        } else {
            var name = [CChar](repeating: 0, count: 256)
            gethostname(&name, name.count)
            hostname = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
    // Every rank must agree on the world size.
    let registered = try store.compareSet("tandem/worldSize", expected: [], desired: Array(String(info.worldSize).utf8))
    let agreed = String(decoding: registered, as: UTF8.self)
    guard agreed == String(info.worldSize) else {
        throw DistributedError.invalidArgument(
            operation: "initProcessGroup",
            message: "mismatched world sizes: rank \(info.rank) was started with world size \(info.worldSize) but another rank registered \(agreed). Start every rank with the same WORLD_SIZE")
    }
    // Two processes must not claim the same rank. A TCP store's claim belongs to the claiming
    // connection, so a rank that dies releases it and its restart can claim it again.
    let claimed: Bool
    if let tcp = store as? TCPStore {
        // A random nonce: pids repeat across machines and containers.
        claimed = try tcp.claim("tandem/rank/\(info.rank)", Array("\(getpid())-\(UInt64.random(in: 0...UInt64.max))".utf8))
    } else {
        claimed = try store.add("tandem/rank/\(info.rank)", 1) == 1
    }
    guard claimed else {
        throw DistributedError.invalidArgument(
            operation: "initProcessGroup",
            message: "rank \(info.rank) was claimed by two processes. Give every process its own RANK in 0..<\(info.worldSize) (and use a fresh file for file://)")
    }
    // Liveness: each rank owns a key that the TCP store deletes when its connection closes.
    // A rank that sees a failure records it before exiting, so that the others name the rank
    // that died first rather than the ones that exited because of it.
    var deadRanks: @Sendable (Int) -> [Int] = { _ in [] }
    let address = info.kind == "file" ? info.path : "\(info.host):\(info.port)"
    if let tcp = store as? TCPStore {
        try tcp.setOwned("tandem/alive/\(info.rank)", [1])
    }
    try waitForAllRanks(store, rank: info.rank, worldSize: info.worldSize, timeout: timeouts.rendezvous, where: address)
    if let tcp = store as? TCPStore {
        let world = info.worldSize
        let heartbeat = try timeouts.heartbeat.map {
            try Heartbeat(host: info.host, port: tcp.port, rank: info.rank, worldSize: world, timeout: $0)
        }
        deadRanks = { [weak tcp, heartbeat] me in
            withExtendedLifetime(heartbeat) {}
            guard let tcp else { return [] }
            let verdict = firstDeadRanks(tcp, world: world)
            // Recorded only once the verdict is read: rank 0 serves the store and waits for this
            // key from every live rank before it exits, so no rank reads a vanished store.
            try? tcp.set("tandem/sawFailure/\(me)", [1])
            // The store dies with this process: when a rank died, give the others a moment to
            // read that verdict rather than blame this rank for leaving.
            if tcp.isServer && !verdict.isEmpty { waitForOthersToNotice(tcp, world: world, me: me) }
            return verdict
        }
    }
    do {
        let transport = try GlooTransport(store: store, prefix: "gloo/default", rank: info.rank, worldSize: info.worldSize,
                                          timeout: timeout, iface: iface ?? "", hostname: hostname, deadWorldRanks: deadRanks)
        return CollectiveGroup(transport: transport, name: "default", timeout: timeout)
    } catch let e as TransportError {
        // Gloo registers each rank's address under gloo/default/<rank>: name the ranks that never came.
        let missing = (0..<info.worldSize).filter { (try? store.check(["gloo/default/\($0)"])) == false }
        if !missing.isEmpty {
            throw DistributedError.rendezvousIncomplete(group: "default", rank: info.rank, worldSize: info.worldSize, missing: missing, after: timeout)
        }
        if e.isTimeout {
            throw DistributedError.timeout(operation: "initProcessGroup (Gloo rendezvous)", group: "default", rank: info.rank, peer: nil, after: timeout)
        }
        throw DistributedError.collectiveFailed(operation: "initProcessGroup (Gloo rendezvous)", group: "default", rank: info.rank, peer: nil, message: e.message)
    }
}

/// The ranks whose store connection is closed and that did not themselves report a failure (the
/// ones that died first), or, after 300 ms, every closed one; [0] when the store itself is gone.
private func firstDeadRanks(_ tcp: TCPStore, world: Int) -> [Int] {
    let deadline = ContinuousClock.now + .milliseconds(300)
    repeat {
        do {
            let gone = try (0..<world).filter { try !tcp.check(["tandem/alive/\($0)"], timeout: .milliseconds(500)) }
            let first = try gone.filter { try !tcp.check(["tandem/sawFailure/\($0)"], timeout: .milliseconds(500)) }
            if !first.isEmpty { return first }
            if !gone.isEmpty && ContinuousClock.now >= deadline { return gone }
        } catch {
            return [0]  // the store itself is gone: rank 0 serves it
        }
        Thread.sleep(forTimeInterval: 0.02)
    } while ContinuousClock.now < deadline
    return []
}

/// Waits (at most 2 s) until every other rank has reported the failure or is gone.
private func waitForOthersToNotice(_ tcp: TCPStore, world: Int, me: Int) {
    let deadline = ContinuousClock.now + .seconds(2)
    while ContinuousClock.now < deadline {
        let pending = (0..<world).filter { r in
            r != me && (try? tcp.check(["tandem/alive/\(r)"], timeout: .milliseconds(500))) == true
                && (try? tcp.check(["tandem/sawFailure/\(r)"], timeout: .milliseconds(500))) == false
        }
        if pending.isEmpty { return }
        Thread.sleep(forTimeInterval: 0.02)
    }
}
