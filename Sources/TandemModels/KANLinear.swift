import Foundation
import TandemNN

/// One Kolmogorov–Arnold layer in the "efficient" formulation (efficient-kan's `KANLinear`):
/// every edge `i → j` carries a learnable 1-D function
/// `φ_ji(x) = baseWeight[j, i] · SiLU(x) + splineScaler[j, i] · Σ_k splineWeight[j, i, k] · B_k(x)`,
/// and output `j` is `Σ_i φ_ji(x_i)`.
///
/// Shapes: input `[N, inFeatures]` → output `[N, outFeatures]`. Parameters (PyTorch names)
/// `base_weight [out, in]`, `spline_weight [out, in, gridSize + splineOrder]`,
/// `spline_scaler [out, in]`; buffer `grid [in, gridSize + 2·splineOrder + 1]` (the knots of
/// each input feature: a grid of `gridSize` intervals extended by `splineOrder` knots each side).
public final class KANLinear: Module {
    /// `[out, in]`, the weight of the SiLU base term.
    public let baseWeight: Parameter
    /// `[out, in, gridSize + splineOrder]`, the B-spline coefficients.
    public let splineWeight: Parameter
    /// `[out, in]`, a standalone scale of each edge's spline.
    public let splineScaler: Parameter
    /// `[in, gridSize + 2·splineOrder + 1]`, the knots per input feature.
    public let grid: Buffer
    /// Number of input features.
    public internal(set) var inFeatures: Int
    /// Number of output features.
    public internal(set) var outFeatures: Int
    /// Number of grid intervals (5 by default).
    public internal(set) var gridSize: Int
    /// Spline order k (3: cubic).
    public let splineOrder: Int
    /// Weight of the uniform grid when the grid adapts to data (efficient-kan's `grid_eps`).
    public var gridEps: Double
    /// Training mode (the layer behaves the same in both modes).
    public var isTraining = true

    /// A layer with a uniform grid of `gridSize` intervals on `gridRange`, initialised like
    /// efficient-kan: `base_weight` and `spline_scaler` ~ U(±1/√in), `spline_weight` small noise
    /// (±`scaleNoise`/(2·gridSize)).
    public init(_ inFeatures: Int, _ outFeatures: Int, gridSize: Int = 5, splineOrder: Int = 3,
                gridRange: ClosedRange<Double> = -1...1, scaleNoise: Double = 0.1, gridEps: Double = 0.02,
                generator: Generator = .default) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.gridSize = Swift.max(gridSize, 1)
        self.splineOrder = Swift.max(splineOrder, 0)
        self.gridEps = gridEps
        let knots = KANLinear.uniformKnots(gridSize: self.gridSize, order: self.splineOrder, range: gridRange)
        grid = Buffer(Tensor(Array(repeating: knots, count: inFeatures).flatMap { $0 }, shape: [inFeatures, knots.count]))
        let bound = inFeatures > 0 ? 1 / Double(inFeatures).squareRoot() : 0
        baseWeight = Parameter(Tensor.uniform([outFeatures, inFeatures], low: -bound, high: bound, generator: generator))
        let noise = scaleNoise / Double(2 * self.gridSize)
        splineWeight = Parameter(Tensor.uniform([outFeatures, inFeatures, self.gridSize + self.splineOrder],
                                                low: -noise, high: noise, generator: generator))
        splineScaler = Parameter(Tensor.uniform([outFeatures, inFeatures], low: -bound, high: bound, generator: generator))
    }

    /// `base_weight`, `spline_weight`, `spline_scaler`.
    public var localParameters: [(String, Parameter)] {
        [("base_weight", baseWeight), ("spline_weight", splineWeight), ("spline_scaler", splineScaler)]
    }
    /// `grid`.
    public var localBuffers: [(String, Buffer)] { [("grid", grid)] }

    /// `gridSize + 2·order + 1` knots: `lo + (t − order)·h` for `t = 0…`, `h = (hi − lo)/gridSize`.
    static func uniformKnots(gridSize: Int, order: Int, range: ClosedRange<Double>) -> [Double] {
        let h = (range.upperBound - range.lowerBound) / Double(gridSize)
        return (-order...(gridSize + order)).map { Double($0) * h + range.lowerBound }
    }

    /// The spline weights multiplied by their scalers, `[out, in, gridSize + splineOrder]`.
    public func scaledSplineWeight() throws -> Tensor {
        try splineWeight.value * splineScaler.value.unsqueeze(-1)
    }

    /// `[N, in]` → `[N, out]`. Throws `TensorError.shapeMismatch` for any other input shape.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try KANLinear.forward(input, grid: grid.value, baseWeight: baseWeight.value, splineWeight: splineWeight.value,
                              splineScaler: splineScaler.value, splineOrder: splineOrder)
    }

    /// The functional form of the layer: `linear(silu(x), baseWeight) + linear(bases(x).flat, scaled spline)`.
    /// `x [N, in]`, `grid [in, G + 2k + 1]`, `baseWeight [out, in]`, `splineWeight [out, in, G + k]`,
    /// `splineScaler [out, in]` → `[N, out]`. Differentiable in `x` and the three weights.
    public static func forward(_ x: Tensor, grid: Tensor, baseWeight: Tensor, splineWeight: Tensor,
                               splineScaler: Tensor, splineOrder: Int) throws -> Tensor {
        let (outF, inF) = (baseWeight.shape[0], baseWeight.shape[1])
        guard x.rank == 2, x.shape[1] == inF else {
            throw TensorError.shapeMismatch(op: "KANLinear", message: "expects input [N, \(inF)], got \(x.shape)")
        }
        let coefficients = grid.shape[1] - splineOrder - 1
        guard splineWeight.shape == [outF, inF, coefficients], splineScaler.shape == [outF, inF] else {
            throw TensorError.shapeMismatch(op: "KANLinear", message: "spline_weight \(splineWeight.shape) and spline_scaler \(splineScaler.shape) do not fit base_weight \(baseWeight.shape) and grid \(grid.shape)")
        }
        let base = try Tensor.linear(x.silu(), weight: baseWeight, bias: nil)
        let bases = try Tensor.bSplineBases(x, grid: grid, order: splineOrder)
        let scaled = try (splineWeight * splineScaler.unsqueeze(-1)).reshape([outF, inF * coefficients])
        let spline = try Tensor.linear(bases.reshape([x.shape[0], inF * coefficients]), weight: scaled, bias: nil)
        return try base + spline
    }
}
