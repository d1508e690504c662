import Foundation

/// Process-level settings that must be in place before native libraries start.
enum ProcessEnvironment {
    /// libgomp's threads (the team that runs oneDNN and Tandem's own kernels) spin for a long
    /// time (about 300,000 iterations) after each parallel region by default, holding cores that
    /// the process's other threads (data workers, communication) and other processes need;
    /// sleeping at once (PASSIVE) makes every region pay for thread wake-ups instead. A short
    /// spin is best here. Measured on 2 cores when Tandem's kernels still ran on Dispatch's
    /// threads, ConvNet training images/s at batch 16 / 64: default 358 (batch 64), PASSIVE
    /// 1,879 / 2,465, ACTIVE with GOMP_SPINCOUNT=5000–20000 3,365–3,388 / 3,067–3,615; with one
    /// team, 1,000 / 10,000 / 100,000 spins were within this machine's noise of each other.
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
