import ArgumentParser
import TandemLaunch

/// `tandem run`: the `torchrun` equivalent. Starts `--nproc-per-node` copies of a program on this
/// node with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT and
/// TANDEM_NUM_THREADS set, prefixes their output with the rank, and when one fails stops the
/// others and exits non-zero naming the rank and how it died.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Launch a distributed job on this node (like torchrun).",
        discussion: "Example: tandem run --nproc-per-node 2 -- ./my-train --epochs 1")

    @Option(parsing: .unconditional, help: "Processes on this node.") var nprocPerNode: Int = 1
    @Option(parsing: .unconditional, help: "Number of nodes.") var nnodes: Int = 1
    @Option(parsing: .unconditional, help: "This node's index, 0..<nnodes.") var nodeRank: Int = 0
    @Option(help: "Address of the node running rank 0.") var masterAddr: String = "127.0.0.1"
    @Option(parsing: .unconditional, help: "Port of the rendezvous store on the master (0: a free port; one node only).") var masterPort: Int = 29500
    @Option(parsing: .unconditional, help: "Restart the whole local group this many times after a failure.") var maxRestarts: Int = 0
    @Option(parsing: .unconditional, help: "Seconds to wait for the ranks to stop after SIGTERM before SIGKILL.") var stopGrace: Double = 3
    @Flag(help: "One node, 127.0.0.1 and a free port.") var standalone = false
    /// `tandem train --nproc-per-node` passes 0: rank 0's standard output (progress, the final
    /// JSON object) then reads as a single process's would; everything else keeps its prefix.
    @Option(help: .hidden) var unprefixedStdoutRank: Int?
    @Argument(parsing: .postTerminator, help: "The program and its arguments, after --.") var command: [String] = []

    /// The launch these flags describe.
    var configuration: LaunchConfiguration {
        LaunchConfiguration(program: command.first ?? "", arguments: Array(command.dropFirst()), nprocPerNode: nprocPerNode,
                            nnodes: nnodes, nodeRank: nodeRank, masterAddr: masterAddr, masterPort: masterPort,
                            maxRestarts: maxRestarts, stopGrace: stopGrace, standalone: standalone,
                            unprefixedStdoutRank: unprefixedStdoutRank)
    }

    func validate() throws {
        do { try configuration.validate() } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        do {
            try Launcher(configuration).run()
        } catch LaunchError.failed {
            throw ExitCode(1)   // the launcher has said which rank failed and how
        } catch let LaunchError.interrupted(signal) {
            throw ExitCode(128 + signal)
        } catch let error as LaunchError {
            throw ValidationError(error.description)
        }
    }
}
