import ArgumentParser
import Foundation
import TandemTrain

/// `tandem kan-toy`: the KAN paper's function-fitting demo (`KANFunctionFitting`): prints the test
/// RMSE of each grid stage and writes an SVG with every learned edge function.
struct KanToyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kan-toy", abstract: "Fit f(x, y) = exp(sin(πx) + y²) with a KAN and grid extension 5 → 10 → 20.")

    @Option(help: "Adam steps per grid stage.") var steps: Int = 300
    @Option(help: "Learning rate.") var lr: Double = 0.01
    @Option(help: "Training and test points.") var points: Int = 1000
    @Option(help: "Grid sizes, comma separated.") var grids: String = "5,10,20"
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Write the learned edge functions to this SVG file.") var plot: String = "kan_toy_edges.svg"

    var fitting: KANFunctionFitting {
        var f = KANFunctionFitting()
        (f.steps, f.lr, f.points, f.seed, f.plot) = (steps, lr, points, seed, plot)
        f.grids = grids.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return f
    }

    func validate() throws {
        do { try fitting.validate() } catch { throw ValidationError("\(error)") }
    }

    func run() throws { _ = try fitting.run() }
}
