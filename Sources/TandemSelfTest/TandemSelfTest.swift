import ArgumentParser
import TandemLaunch

/// `tandem-selftest`: the worker the distributed tests start as real processes (kept out of
/// the product `tandem`).
@main
struct TandemSelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem-selftest", abstract: "Workers for Tandem's distributed tests.",
        subcommands: [DistSelfTestCommand.self])

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
