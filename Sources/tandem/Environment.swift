import Foundation

/// Process-level settings that must be in place before native libraries start.
enum ProcessEnvironment {
    /// The wait policy of libgomp's threads (the team that runs oneDNN and Tandem's kernels): a
    /// short spin (ACTIVE, GOMP_SPINCOUNT=10000) is fastest here, between libgomp's default long
    /// spin, which holds cores other threads need, and sleeping at once (PASSIVE), which pays a
    /// wake-up per parallel region; see docs/BENCHMARKS.md (issue 3).
    /// libgomp reads these variables only when it is loaded, so when neither is set the tool
    /// sets them and re-executes itself once. Values the user set are kept.
    static let openMPSettings = ["OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "10000"]

    static func ensureShortOpenMPSpin() {
        let environment = ProcessInfo.processInfo.environment
        guard environment["OMP_WAIT_POLICY"] == nil && environment["GOMP_SPINCOUNT"] == nil else { return }
        for (key, value) in openMPSettings { setenv(key, value, 1) }
        let arguments = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // execv returns only on failure; carry on with the default policy.
    }
}
