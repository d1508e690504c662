import ArgumentParser
import TandemCore

@main
struct TandemCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Tandem: deep-learning training in Swift.",
        subcommands: [TrainCommand.self, EvalCommand.self, DemoCommand.self, BenchCommand.self, RunCommand.self, DistSelfTestCommand.self])
}

/// `tandem bench`: micro-benchmarks, one JSON line per case.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure Tandem's kernels.", subcommands: [BenchOps.self])
}
