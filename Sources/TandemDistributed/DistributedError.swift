import TandemCore

/// Errors raised by process groups, stores, rendezvous and the launcher. Every message names
/// the operation, the group and rank where known, and says what to do.
public enum DistributedError: Error, CustomStringConvertible, Sendable {
    /// A collective or point-to-point operation failed: a peer died, reset the connection or
    /// never arrived. `peer` is the missing or failed rank when it is known.
    case collectiveFailed(operation: String, group: String, rank: Int, peer: Int?, message: String)
    /// An operation did not complete within its timeout.
    case timeout(operation: String, group: String, rank: Int, peer: Int?, after: Duration)
    /// Not every rank arrived at the rendezvous within the timeout; `missing` lists those that did not.
    case rendezvousIncomplete(group: String, rank: Int, worldSize: Int, missing: [Int], after: Duration)
    /// The group had failed before: a context cannot be reused after an error.
    case groupBroken(operation: String, group: String, rank: Int, cause: String)
    /// A bad argument (rank ≥ world size, wrong dtype, mismatched shapes, ...).
    case invalidArgument(operation: String, message: String)
    /// A required environment variable is not set.
    case missingEnvironment(variable: String, hint: String)
    /// An environment variable has a value that cannot be used.
    case malformedEnvironment(variable: String, value: String, expected: String)
    /// The init method (`tcp://`, `env://`, `file://`) cannot be parsed.
    case invalidInitMethod(String, message: String)
    /// The store's master could not be reached before the timeout.
    case unreachable(host: String, port: Int, after: Duration, message: String)
    /// The store's port is already taken by another process.
    case addressInUse(host: String, port: Int)
    /// The network interface named by an environment variable does not exist.
    case interfaceNotFound(name: String, variable: String, available: [String])
    /// A key-value store request failed (connection closed, protocol error, bad value).
    case store(operation: String, message: String)
    /// A backend or feature that this build does not provide.
    case unsupported(String)

    /// A human-readable message that says what happened and what to do.
    public var description: String {
        switch self {
        case let .collectiveFailed(op, group, rank, peer, message):
            let who = peer.map { " (peer rank \($0))" } ?? ""
            return "\(op) failed in process group '\(group)' on rank \(rank)\(who): \(message). "
                + "A peer process probably died or was stopped; check its output, then restart the whole job."
        case let .timeout(op, group, rank, peer, after):
            let who = peer.map { ", waiting for rank \($0)" } ?? ""
            return "\(op) timed out after \(format(after)) in process group '\(group)' on rank \(rank)\(who). "
                + "Make sure every rank calls the same collectives in the same order and that no rank is stuck; "
                + "raise the timeout if the work is legitimately slow."
        case let .rendezvousIncomplete(group, rank, worldSize, missing, after):
            return "rendezvous of process group '\(group)' failed on rank \(rank): rank(s) \(missing.map(String.init).joined(separator: ", ")) "
                + "of \(worldSize) did not arrive within \(format(after)). Check that all \(worldSize) processes started, "
                + "that WORLD_SIZE matches the number of processes, and that they use the same master address and port."
        case let .groupBroken(op, group, rank, cause):
            return "\(op) cannot run: process group '\(group)' on rank \(rank) failed earlier (\(cause)). "
                + "A group cannot be reused after an error; create a new one (restart the job)."
        case let .invalidArgument(op, message):
            return "\(op): \(message)"
        case let .missingEnvironment(variable, hint):
            return "environment variable \(variable) is not set. \(hint)"
        case let .malformedEnvironment(variable, value, expected):
            return "environment variable \(variable)='\(value)' is invalid: expected \(expected)."
        case let .invalidInitMethod(method, message):
            return "init method '\(method)': \(message). Use tcp://HOST:PORT, env:// or file:///path."
        case let .unreachable(host, port, after, message):
            return "cannot reach the rendezvous store at \(host):\(port) after \(format(after)) (\(message)). "
                + "Check MASTER_ADDR/MASTER_PORT (or the tcp:// address) and that rank 0 is running."
        case let .addressInUse(host, port):
            return "cannot serve the rendezvous store on \(host):\(port): the port is already in use. "
                + "Choose another MASTER_PORT (tandem run --master-port 0 picks a free one) or stop the other job."
        case let .interfaceNotFound(name, variable, available):
            return "network interface '\(name)' from \(variable) does not exist on this machine. "
                + "Available interfaces: \(available.joined(separator: ", ")). Set \(variable) to one of them or unset it."
        case let .store(op, message):
            return "store \(op): \(message)"
        case let .unsupported(message):
            return message
        }
    }
}

func format(_ d: Duration) -> String {
    let (s, atto) = d.components
    let ms = Double(s) * 1000 + Double(atto) / 1e15
    return ms >= 1000 ? "\((ms / 10).rounded() / 100) s" : "\(Int(ms.rounded())) ms"
}

extension Duration {
    /// Whole milliseconds, at least 1.
    var milliseconds: Int64 {
        let (s, atto) = components
        return max(1, s * 1000 + atto / 1_000_000_000_000_000)
    }
}
