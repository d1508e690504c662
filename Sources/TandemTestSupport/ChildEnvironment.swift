import Foundation

/// The environment for a `tandem` process a test starts: this process's, without the
/// launcher's variables (a test run under `tandem run` must not hand its rank to the child),
/// with `extra` set on top.
public func childEnvironment(_ extra: [String: String] = [:], removing more: [String] = []) -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    for key in ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"] + more { env[key] = nil }
    return env.merging(extra) { $1 }
}
