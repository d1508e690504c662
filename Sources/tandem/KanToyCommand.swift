import ArgumentParser
import Foundation
import TandemModels
import TandemNN
import TandemOptim
import TandemTrain

/// `tandem kan-toy`: the KAN paper's function-fitting demo. A KAN [2, 5, 1] learns
/// f(x, y) = exp(sin(πx) + y²) on [-1, 1]² with Adam (full batch), on grids of 5, then 10, then
/// 20 intervals (grid extension between stages); prints the test RMSE of each stage and writes an
/// SVG with every learned edge function.
struct KanToyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kan-toy", abstract: "Fit f(x, y) = exp(sin(πx) + y²) with a KAN and grid extension 5 → 10 → 20.")

    @Option(help: "Adam steps per grid stage.") var steps: Int = 300
    @Option(help: "Learning rate.") var lr: Double = 0.01
    @Option(help: "Training and test points.") var points: Int = 1000
    @Option(help: "Grid sizes, comma separated.") var grids: String = "5,10,20"
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Write the learned edge functions to this SVG file.") var plot: String = "kan_toy_edges.svg"

    func validate() throws {
        guard steps > 0, points > 1, lr > 0 else { throw ValidationError("--steps, --points and --lr must be positive") }
        guard !gridSizes.isEmpty, gridSizes.allSatisfy({ $0 > 0 }) else { throw ValidationError("--grids must list positive sizes") }
    }

    var gridSizes: [Int] { grids.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    static func target(_ x: Tensor) throws -> Tensor {
        let v = x.toDoubleArray()
        return Tensor((0..<x.shape[0]).map { Foundation.exp(Foundation.sin(Double.pi * v[2 * $0]) + v[2 * $0 + 1] * v[2 * $0 + 1]) },
                      shape: [x.shape[0], 1])
    }

    func run() throws {
        let gen = Generator(seed: seed)
        let trainX = Tensor.uniform([points, 2], low: -1, high: 1, generator: gen)
        let testX = Tensor.uniform([points, 2], low: -1, high: 1, generator: gen)
        let trainY = try Self.target(trainX), testY = try Self.target(testX)
        let sizes = gridSizes
        let kan = KAN([2, 5, 1], gridSize: sizes[0], generator: gen)
        func rmse(_ x: Tensor, _ y: Tensor) throws -> Double {
            try Tensor.withNoGrad { try Tensor.mseLoss(kan(x), y).item().squareRoot() }
        }
        for (stage, size) in sizes.enumerated() {
            if stage > 0 {
                let before = try rmse(testX, testY)
                try kan.extendGrid(to: size, using: trainX)
                print(String(format: "grid %d → %d: test RMSE %.3e → %.3e right after extension", sizes[stage - 1], size,
                             before, try rmse(testX, testY)))
            } else {
                try kan.updateGrid(from: trainX)
            }
            let opt = try Adam(kan.parameters(), lr: lr)
            for _ in 0..<steps {
                kan.zeroGrad()
                let loss = try Tensor.mseLoss(kan(trainX), trainY)
                try loss.backward()
                try opt.step()
            }
            print(String(format: "grid %2d: train RMSE %.3e, test RMSE %.3e", size, try rmse(trainX, trainY), try rmse(testX, testY)))
        }
        try writeEdgePlot(kan)
        print("edge functions: \(plot)")
    }

    /// One panel per edge `layer l: i → j`, the function φ_ji over its layer's input range.
    func writeEdgePlot(_ kan: KAN) throws {
        var series: [Plot.Series] = []
        for (l, layer) in kan.layers.enumerated() {
            let knots = layer.grid.value.toDoubleArray(), m = layer.grid.value.shape[1]
            let samples = 101
            var columns: [[Double]] = []
            for i in 0..<layer.inFeatures {
                let lo = knots[i * m + layer.splineOrder], hi = knots[i * m + m - 1 - layer.splineOrder]
                columns.append((0..<samples).map { lo + (hi - lo) * Double($0) / Double(samples - 1) })
            }
            let x = Tensor((0..<samples).flatMap { s in columns.map { $0[s] } }, shape: [samples, layer.inFeatures])
            let phi = try Tensor.withNoGrad { try layer.edgeActivations(x) }.toDoubleArray()   // [S, out, in]
            for j in 0..<layer.outFeatures {
                for i in 0..<layer.inFeatures {
                    let points = (0..<samples).map { s in
                        (columns[i][s], phi[(s * layer.outFeatures + j) * layer.inFeatures + i])
                    }
                    series.append(Plot.Series(title: "layer \(l): \(i) → \(j)", points: points))
                }
            }
        }
        try Plot.writeSVG(series, xLabel: "input", to: plot)
    }
}
