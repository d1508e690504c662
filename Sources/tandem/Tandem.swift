import ArgumentParser
import Foundation
import TandemCore

@main
struct TandemCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Tandem: deep-learning training in Swift.",
        subcommands: [TrainCommand.self, EvalCommand.self, GenerateCommand.self, RunCommand.self, BenchCommand.self, FlopsCommand.self,
                      KanToyCommand.self, AdviseCommand.self, DistSelfTestCommand.self])

    static func main() {
        ProcessEnvironment.ensureShortOpenMPSpin()
        do {
            try Tandem.checkMemoryEnvironment()
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// `tandem bench`: micro-benchmarks, one JSON line per case.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure Tandem: kernels (ops), collectives (allreduce), DataParallel (dataparallel), mixed precision (amp).",
        subcommands: [BenchOps.self, BenchAllReduce.self, BenchDataParallel.self, BenchAMP.self])
}
