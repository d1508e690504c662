import ArgumentParser
import Foundation
import TandemCore

@main
struct TandemCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Tandem: deep-learning training in Swift.",
        subcommands: [TrainCommand.self, EvalCommand.self, GenerateCommand.self, RunCommand.self, PlotCommand.self, BenchCommand.self, FlopsCommand.self,
                      KanToyCommand.self, AdviseCommand.self, DistSelfTestCommand.self])

    static func main() {
        ProcessEnvironment.ensureShortOpenMPSpin()
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

/// `tandem bench`: micro-benchmarks, one JSON line per case.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure Tandem: kernels (ops), collectives (allreduce), DataParallel (dataparallel), mixed precision (amp).",
        subcommands: [BenchOps.self, BenchAllReduce.self, BenchDataParallel.self, BenchAMP.self])
}
