import Foundation

/// Fault injection for the launcher's failure tests: with `TANDEM_FAULT_KILL_STEP=S` and
/// `TANDEM_FAULT_KILL_RANK=R`, rank R kills itself with SIGKILL right after step S, on the
/// first attempt only (`TANDEM_RESTART_COUNT` unset or 0), so a restarted job can finish.
enum FaultInjection {
    static func fromEnvironment(rank: Int) -> (@Sendable (Int) -> Void)? {
        let env = ProcessInfo.processInfo.environment
        guard let step = env["TANDEM_FAULT_KILL_STEP"].flatMap(Int.init),
              (env["TANDEM_FAULT_KILL_RANK"].flatMap(Int.init) ?? 0) == rank,
              (env["TANDEM_RESTART_COUNT"].flatMap(Int.init) ?? 0) == 0 else { return nil }
        return { current in if current == step { kill(getpid(), SIGKILL) } }
    }
}
