import Foundation
import TandemCore
import TandemModels
import TandemNN
import TandemOptim

/// The KAN paper's function-fitting demo (`tandem kan-toy`, `tandem train --model kan --dataset
/// kan-toy`): a KAN [2, 5, 1] learns f(x, y) = exp(sin(πx) + y²) on [-1, 1]² with Adam (full
/// batch) on grids of 5, then 10, then 20 intervals, extending the grid between stages.
public struct KANFunctionFitting: Sendable {
    /// Adam steps per grid stage, learning rate, training (and test) points, grid sizes, seed.
    public var steps = 300, lr = 0.01, points = 1000
    public var grids = [5, 10, 20]
    public var seed: UInt64 = 0
    /// Write the learned edge functions to this SVG file (nil: no plot).
    public var plot: String? = "kan_toy_edges.svg"

    public init() {}

    /// Throws `TrainError.invalidArgument` for non-positive steps, points, rate or grid sizes.
    public func validate() throws {
        guard steps > 0, points > 1, lr > 0 else { throw TrainError.invalidArgument("--steps, --points and --lr must be positive") }
        guard !grids.isEmpty, grids.allSatisfy({ $0 > 0 }) else { throw TrainError.invalidArgument("--grids must list positive sizes") }
    }

    /// The function being fitted, for points `[N, 2]` → `[N, 1]`.
    public static func target(_ x: Tensor) throws -> Tensor {
        let v = x.toDoubleArray()
        return Tensor((0..<x.shape[0]).map { Foundation.exp(Foundation.sin(Double.pi * v[2 * $0]) + v[2 * $0 + 1] * v[2 * $0 + 1]) },
                      shape: [x.shape[0], 1])
    }

    /// Fits the function stage by stage, reporting through `log`; returns the test RMSE of each stage.
    public func run(log: (String) -> Void = { print($0) }) throws -> [Double] {
        let gen = Generator(seed: seed)
        let trainX = Tensor.uniform([points, 2], low: -1, high: 1, generator: gen)
        let testX = Tensor.uniform([points, 2], low: -1, high: 1, generator: gen)
        let trainY = try Self.target(trainX), testY = try Self.target(testX)
        let sizes = grids
        var testRMSE: [Double] = []
        let kan = KAN([2, 5, 1], gridSize: sizes[0], generator: gen)
        func rmse(_ x: Tensor, _ y: Tensor) throws -> Double {
            try Tensor.withNoGrad { try Tensor.mseLoss(kan(x), y).item().squareRoot() }
        }
        for (stage, size) in sizes.enumerated() {
            if stage > 0 {
                let before = try rmse(testX, testY)
                try kan.extendGrid(to: size, using: trainX)
                log(String(format: "grid %d → %d: test RMSE %.3e → %.3e right after extension", sizes[stage - 1], size,
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
            let test = try rmse(testX, testY)
            testRMSE.append(test)
            log(String(format: "grid %2d: train RMSE %.3e, test RMSE %.3e", size, try rmse(trainX, trainY), test))
        }
        if let plot {
            try writeEdgePlot(kan, to: plot)
            log("edge functions: \(plot)")
        }
        return testRMSE
    }

    /// One panel per edge `layer l: i → j`, the function φ_ji over its layer's input range.
    public func writeEdgePlot(_ kan: KAN, to plot: String) throws {
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
