import Foundation

/// What `Launcher` starts and how (`tandem run`'s flags).
public struct LaunchConfiguration: Sendable {
    /// The program (a path, or a name looked up in PATH) and its arguments.
    public var program: String
    public var arguments: [String]
    /// Processes on this node.
    public var nprocPerNode: Int
    /// Number of nodes and this node's index in `0..<nnodes`.
    public var nnodes: Int
    public var nodeRank: Int
    /// Address and port of the rendezvous store on the node of rank 0 (port 0: a free port;
    /// one node only).
    public var masterAddr: String
    public var masterPort: Int
    /// Restart the whole local group this many times after a failure.
    public var maxRestarts: Int
    /// Seconds the ranks get to stop after SIGTERM before SIGKILL.
    public var stopGrace: Double
    /// One node, 127.0.0.1 and a free port.
    public var standalone: Bool
    /// The rank whose standard output is passed through without the `[rank N]` prefix
    /// (`tandem train --nproc-per-node` uses 0, so its output reads as one process's).
    public var unprefixedStdoutRank: Int?

    public init(program: String, arguments: [String] = [], nprocPerNode: Int = 1, nnodes: Int = 1, nodeRank: Int = 0,
                masterAddr: String = "127.0.0.1", masterPort: Int = 29500, maxRestarts: Int = 0, stopGrace: Double = 3,
                standalone: Bool = false, unprefixedStdoutRank: Int? = nil) {
        self.program = program
        self.arguments = arguments
        self.nprocPerNode = nprocPerNode
        self.nnodes = nnodes
        self.nodeRank = nodeRank
        self.masterAddr = masterAddr
        self.masterPort = masterPort
        self.maxRestarts = maxRestarts
        self.stopGrace = stopGrace
        self.standalone = standalone
        self.unprefixedStdoutRank = unprefixedStdoutRank
    }

    /// Throws `LaunchError.invalidConfiguration` naming the setting (as its flag) and what to give.
    public func validate() throws {
        func fail(_ message: String) -> LaunchError { .invalidConfiguration(message) }
        guard !program.isEmpty else { throw fail("give the program to run after --, e.g. tandem run --nproc-per-node 2 -- ./train") }
        guard nprocPerNode >= 1 else { throw fail("--nproc-per-node must be at least 1") }
        guard nnodes >= 1 else { throw fail("--nnodes must be at least 1") }
        guard (0..<nnodes).contains(nodeRank) else { throw fail("--node-rank must be in 0..<\(nnodes) (--nnodes)") }
        guard (0...65535).contains(masterPort) else { throw fail("--master-port must be in 0...65535") }
        guard masterPort != 0 || nnodes == 1 || standalone else {
            throw fail("--master-port 0 (a free port) works only on one node; give every node the same port")
        }
        guard maxRestarts >= 0 else { throw fail("--max-restarts must not be negative") }
        guard stopGrace >= 0, stopGrace.isFinite else { throw fail("--stop-grace must be a number of seconds ≥ 0") }
    }
}

/// Why a launch did not end with every rank exiting 0.
public enum LaunchError: Error, CustomStringConvertible, Equatable {
    /// A setting is out of range.
    case invalidConfiguration(String)
    /// The program is neither a path nor found in PATH.
    case programNotFound(String)
    /// The program could not be started.
    case cannotStart(program: String, reason: String)
    /// A rank failed (after the restarts); names the rank, its pid and how it died.
    case failed(String)
    /// The launcher got SIGINT, SIGTERM or SIGHUP and stopped every rank.
    case interrupted(signal: Int32)

    public var description: String {
        switch self {
        case let .invalidConfiguration(message): return message
        case let .programNotFound(program): return "program '\(program)' not found in PATH; give its path"
        case let .cannotStart(program, reason): return "cannot start \(program): \(reason)"
        case let .failed(failure): return "\(failure); stopped the other ranks"
        case let .interrupted(signal): return "interrupted by signal \(signal); stopped every rank"
        }
    }
}

/// The OpenMP wait policy Tandem's processes run with (`tandem run` sets it for its ranks when
/// the user has not): libgomp's threads spin briefly after each parallel region instead of
/// libgomp's default long spin, which holds cores other threads need, or sleeping at once
/// (PASSIVE), which pays a wake-up per region (docs/BENCHMARKS.md, issue 3).
public enum OpenMPSettings {
    /// The environment variables and values.
    public static let shortSpin = ["OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "10000"]

    /// Puts `shortSpin` in place for this process: libgomp reads the variables only when it is
    /// loaded, so when neither is set this sets them and re-executes the program once (call it
    /// first thing in `main`). Values the user set are kept.
    public static func ensureShortSpin() {
        let environment = ProcessInfo.processInfo.environment
        guard environment["OMP_WAIT_POLICY"] == nil && environment["GOMP_SPINCOUNT"] == nil else { return }
        for (key, value) in shortSpin { setenv(key, value, 1) }
        var argv: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // execv returns only on failure; carry on with the default policy.
    }
}
