import ArgumentParser
import Foundation
import TandemCore
import TandemLaunch

@main
struct TandemCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Tandem: deep-learning training in Swift.",
        subcommands: [TrainCommand.self, EvalCommand.self, GenerateCommand.self, LogitsCommand.self, RunCommand.self, PlotCommand.self, BenchCommand.self, FlopsCommand.self,
                      KanToyCommand.self, AdviseCommand.self])

    static func main() {
        OpenMPSettings.ensureShortSpin()
        do {
            try Tandem.checkMemoryEnvironment()
            var command = try parseAsRoot(Self.spellingsRewritten(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

extension TandemCommand {
    /// `--resume weights-only` (an option value ArgumentParser cannot give a flag) as the
    /// flag `--resume-weights-only`.
    static func spellingsRewritten(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            if arguments[i] == "--" { out += arguments[i...]; break }
            if arguments[i] == "--resume", i + 1 < arguments.count, arguments[i + 1] == "weights-only" {
                out.append("--resume-weights-only")
                i += 2
                continue
            }
            out.append(arguments[i])
            i += 1
        }
        return out
    }
}

/// `tandem bench`: runs `tandem-bench` (next to this executable) with the same arguments, so
/// the benchmarks stay out of this binary.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Tandem: kernels (ops), collectives (allreduce), DataParallel (dataparallel), mixed precision (amp).",
        discussion: "Runs the tandem-bench executable built next to tandem; `tandem bench ops --help` lists its options.")

    @Argument(parsing: .captureForPassthrough, help: "The benchmark and its options, e.g. ops --filter conv.") var arguments: [String] = []

    func run() throws {
        let this = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let bench = URL(fileURLWithPath: this).deletingLastPathComponent().appendingPathComponent("tandem-bench").path
        guard FileManager.default.isExecutableFile(atPath: bench) else {
            throw ValidationError("tandem bench runs tandem-bench, which is not built next to tandem (\(bench)); build it with `swift build -c release --product tandem-bench`")
        }
        var argv: [UnsafeMutablePointer<CChar>?] = ([bench] + arguments).map { strdup($0) }
        argv.append(nil)
        execv(bench, &argv)
        throw ValidationError("could not start \(bench): \(String(cString: strerror(errno)))")
    }
}
