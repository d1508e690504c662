import ArgumentParser
import TandemLaunch

/// `tandem-bench` (and `tandem bench`, which runs it): micro-benchmarks, one JSON line per case.
/// A separate executable, so the product `tandem` carries no benchmark code.
@main
struct TandemBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem-bench",
        abstract: "Measure Tandem: kernels (ops), collectives (allreduce), DataParallel (dataparallel), mixed precision (amp).",
        subcommands: [BenchOps.self, BenchAllReduce.self, BenchDataParallel.self, BenchAMP.self, BenchGPT.self, BenchLM.self])

    static func main() {
        OpenMPSettings.ensureShortSpin()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
