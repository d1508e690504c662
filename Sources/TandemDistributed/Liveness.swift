import Foundation
import Synchronization

/// The timeouts of a distributed job, from arguments or the environment (seconds, as decimals):
///
/// - `TANDEM_TIMEOUT`: every collective and store operation (default 30 minutes, as PyTorch's);
/// - `TANDEM_RENDEZVOUS_TIMEOUT`: how long `initProcessGroup` waits for every rank to join
///   (default 10 minutes, at most the operation timeout); it names the missing ranks every
///   10 seconds while it waits;
/// - `TANDEM_HEARTBEAT_TIMEOUT`: how long a rank's process may be stopped (SIGSTOP, a
///   debugger, a frozen machine) before the job ends naming it (default 20 s; 0 turns the
///   heartbeat off). TCP stores only. The heartbeat runs on a thread of its own, so a rank
///   whose main thread is stuck keeps beating: the collective timeout catches that.
public struct DistributedTimeouts: Sendable, Equatable {
    public var operation: Duration
    public var rendezvous: Duration
    public var heartbeat: Duration?

    public static let defaultRendezvous: Duration = .seconds(600)
    public static let defaultHeartbeat: Duration = .seconds(20)

    /// The timeouts `environment` sets; `operation` overrides `TANDEM_TIMEOUT`.
    public static func resolve(operation: Duration? = nil,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DistributedTimeouts {
        func seconds(_ variable: String, allowZero: Bool = false) throws -> Duration? {
            guard let text = environment[variable] else { return nil }
            guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite,
                  value > 0 || (allowZero && value == 0), value < 1e9 else {
                throw DistributedError.malformedEnvironment(variable: variable, value: text,
                                                            expected: allowZero ? "a number of seconds ≥ 0 (0: off)" : "a number of seconds > 0")
            }
            return .milliseconds(Int64((value * 1000).rounded()))
        }
        let op = try operation ?? seconds("TANDEM_TIMEOUT") ?? defaultTimeout
        let rendezvous = min(try seconds("TANDEM_RENDEZVOUS_TIMEOUT") ?? defaultRendezvous, op)
        let heartbeat = try seconds("TANDEM_HEARTBEAT_TIMEOUT", allowZero: true) ?? defaultHeartbeat
        return DistributedTimeouts(operation: op, rendezvous: rendezvous, heartbeat: heartbeat == .zero ? nil : heartbeat)
    }
}

/// Waits until every rank of `worldSize` has set `tandem/joined/<rank>` (this one included),
/// naming the missing ranks on standard error every 10 s (a quarter of a shorter timeout; rank
/// 0 only, so the job's log says once who it waits for), and gives up after `timeout` naming them.
func waitForAllRanks(_ store: any Store, rank: Int, worldSize: Int, timeout: Duration, where address: String) throws {
    try store.set("tandem/joined/\(rank)", [1])
    let start = ContinuousClock.now
    let every = Swift.min(Duration.seconds(10), timeout / 4)
    var nextReport = start + every
    var pause = 0.002
    let keys = (0..<worldSize).map { "tandem/joined/\($0)" }
    /// The ranks that have not joined (a request each: asked only to report them).
    func missing() throws -> [Int] { try (0..<worldSize).filter { try !store.check([keys[$0]]) } }
    while true {
        if try store.check(keys) { return }  // one request a poll
        let now = ContinuousClock.now
        if now - start >= timeout {
            let missing = try missing()
            throw DistributedError.rendezvousIncomplete(group: "default", rank: rank, worldSize: worldSize, missing: missing,
                                                        after: now - start)
        }
        if now >= nextReport && rank == 0 {
            let missing = try missing()
            report("tandem: rank 0 is waiting at \(address) for rank(s) \(missing.map(String.init).joined(separator: ", ")) "
                   + "of \(worldSize) to join (\(worldSize - missing.count) joined, \(format(now - start)) so far; "
                   + "giving up after \(format(timeout)), TANDEM_RENDEZVOUS_TIMEOUT)")
            nextReport = now + every
        }
        Thread.sleep(forTimeInterval: pause)
        pause = Swift.min(pause * 2, 0.1)
    }
}

/// Writes one line to standard error at once.
func report(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Heartbeats through the TCP store on a connection of their own: every rank adds to
/// `tandem/heartbeat/<rank>` several times per timeout; rank 0 watches every other rank and
/// the others watch rank 0. A rank whose counter stops moving while its store connection stays
/// open (its process is stopped, not exited) for longer than the timeout ends this process with
/// a message naming it, so that the launcher stops the job instead of everyone waiting for the
/// 30-minute collective timeout. A rank that exits closes its connection and is not watched
/// any more; a store that is gone (rank 0 exited) ends the heartbeat quietly.
final class Heartbeat: Sendable {
    /// Set when the heartbeat should end.
    private final class StopFlag: Sendable { let value = Atomic<Bool>(false) }
    private let stopped = StopFlag()

    init(host: String, port: Int, rank: Int, worldSize: Int, timeout: Duration) throws {
        let period = Swift.max(Duration.milliseconds(50), Swift.min(timeout / 4, .seconds(5)))
        let connection = try TCPStore(host: host, port: port, isServer: false, timeout: timeout)
        let watched = rank == 0 ? Array(1..<worldSize) : [0]
        let thread = Thread { [stopped] in
            var seen: [Int: (count: Int64, at: ContinuousClock.Instant)] = [:]
            var lastAnswer = ContinuousClock.now
            var lastRound = ContinuousClock.now
            while !stopped.value.load(ordering: .relaxed) {
                // This process itself was stopped (the whole job suspended, Ctrl-Z then fg): the
                // silence it saw is its own, so every peer starts afresh. (A round takes at most
                // two periods, half the timeout, when the store does not answer.)
                let now = ContinuousClock.now
                if now - lastRound > timeout {
                    for peer in seen.keys { seen[peer]?.at = now }
                    lastAnswer = now
                }
                lastRound = now
                do {
                    _ = try connection.add("tandem/heartbeat/\(rank)", 1, timeout: period)
                    lastAnswer = .now
                    for peer in watched {
                        guard try connection.check(["tandem/alive/\(peer)"], timeout: period) else {
                            seen[peer] = nil  // exited: its connection closed
                            continue
                        }
                        let count = try connection.add("tandem/heartbeat/\(peer)", 0, timeout: period)
                        let now = ContinuousClock.now
                        if let last = seen[peer], last.count == count {
                            if now - last.at > timeout { Self.end(rank: rank, silent: peer, for: now - last.at) }
                        } else {
                            seen[peer] = (count, now)
                        }
                    }
                } catch let error as DistributedError where error.isTimeout || error.isUnanswered {
                    // The store does not answer: rank 0 (its server) is stopped or hung.
                    if rank != 0, ContinuousClock.now - lastAnswer > timeout {
                        Self.end(rank: rank, silent: 0, for: ContinuousClock.now - lastAnswer)
                    }
                } catch {
                    return  // the store is gone: the job is ending (or rank 0 died, which the collectives report)
                }
                Thread.sleep(forTimeInterval: Double(period.milliseconds) / 1000)
            }
            connection.shutdown()
        }
        thread.name = "tandem.heartbeat"
        thread.start()
    }

    /// Stops the heartbeat (this process is leaving the group).
    func stop() { stopped.value.store(true, ordering: .relaxed) }

    deinit { stop() }

    private static func end(rank: Int, silent peer: Int, for silence: Duration) -> Never {
        report("tandem: rank \(peer) has sent no heartbeat for \(format(silence)) while still connected: its process is "
               + "stopped (SIGSTOP, a debugger, a frozen machine). Rank \(rank) ends the job now instead of waiting for the collective timeout "
               + "(TANDEM_HEARTBEAT_TIMEOUT sets how long a rank may be silent; 0 turns this off).")
        _exit(1)
    }
}

extension DistributedError {
    /// Whether the store accepted a connection (or none was refused) but did not answer: its
    /// process is stopped. A refused connection means it is gone.
    var isUnanswered: Bool {
        if case let .unreachable(_, _, _, message) = self { return !message.contains("refused") }
        if case let .store(_, message) = self { return message.contains("imed out") }
        return false
    }

    /// Whether this is a timeout (of an operation or of a store request).
    var isTimeout: Bool {
        switch self {
        case .timeout: return true
        case let .store(_, message): return message.hasPrefix("timed out")
        default: return false
        }
    }
}
