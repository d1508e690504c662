import ArgumentParser
import TandemCore

@main
struct TandemCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Tandem: deep-learning training in Swift.",
        subcommands: [])
}
