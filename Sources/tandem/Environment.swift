import Foundation

/// Process-level settings that must be in place before native libraries start.
enum ProcessEnvironment {
    /// oneDNN's OpenMP threads spin for a long time after each parallel region by default,
    /// stealing the cores that Tandem's own kernel threads need (measured: 358 against 2,191
    /// ConvNet training images/s on 2 cores). libgomp reads OMP_WAIT_POLICY only when it is
    /// loaded, so when the variable is unset the tool sets it to PASSIVE and re-executes itself
    /// once. A value the user set is kept.
    static func ensurePassiveOpenMP() {
        guard ProcessInfo.processInfo.environment["OMP_WAIT_POLICY"] == nil else { return }
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1)
        let arguments = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // execv returns only on failure; carry on with the default policy.
    }
}
