import Foundation
import TandemNN

/// A Kolmogorov–Arnold network: a stack of `KANLinear` layers, `KAN([784, 64, 10])` has layers
/// 784→64 and 64→10. Inputs with more than two dimensions are flattened after the batch
/// dimension, so MNIST images `[N, 1, 28, 28]` go in directly; output `[N, widths.last]`.
/// State-dict names follow efficient-kan: `layers.<l>.base_weight`, `.spline_weight`,
/// `.spline_scaler`, `.grid`.
public final class KAN: Module {
    /// The layers, in order.
    public private(set) var layers: [KANLinear]
    /// Training mode (the layer behaves the same in both modes).
    public var isTraining = true

    /// Layer widths, e.g. `[784, 64, 10]`; the other arguments go to every `KANLinear`.
    public init(_ widths: [Int], gridSize: Int = 5, splineOrder: Int = 3, gridRange: ClosedRange<Double> = -1...1,
                generator: Generator = .default) {
        layers = zip(widths, widths.dropFirst()).map {
            KANLinear($0, $1, gridSize: gridSize, splineOrder: splineOrder, gridRange: gridRange, generator: generator)
        }
    }

    /// Current layer widths: `[in of layer 0, out of layer 0, out of layer 1, ...]`.
    public var widths: [Int] { (layers.first.map { [$0.inFeatures] } ?? []) + layers.map(\.outFeatures) }

    /// `layers` (named `0`, `1`, ... inside).
    public var children: [(String, any Module)] { [("layers", Sequential(layers))] }

    /// `[N, in]` (or `[N, ...]` flattening to `in` features) → `[N, out]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try layerInputs(input).last.map { $0 } ?? input
    }

    /// The input of every layer and, last, the network output (all differentiable).
    func layerInputs(_ input: Tensor) throws -> [Tensor] {
        guard input.rank >= 2 else {
            throw TensorError.shapeMismatch(op: "KAN", message: "expects [N, features] or [N, ...], got \(input.shape)")
        }
        var x = input.rank > 2 ? try input.flatten(start: 1) : input
        var out = [x]
        for layer in layers {
            x = try layer(x)
            out.append(x)
        }
        return out
    }

    /// Refines every layer's grid to `newGridSize` intervals, keeping each learned function on
    /// the sample `x` (grid extension, e.g. 5 → 10 → 20). Make a new optimizer afterwards.
    public func extendGrid(to newGridSize: Int, using x: Tensor) throws {
        let inputs = try Tensor.withNoGrad { try layerInputs(x) }
        for (layer, input) in zip(layers, inputs) { try layer.extendGrid(to: newGridSize, using: input) }
    }

    /// Adapts every layer's grid to the activations `x` produces (see `KANLinear.updateGrid`).
    public func updateGrid(from x: Tensor, margin: Double = 0.01) throws {
        for l in layers.indices {
            let input = try Tensor.withNoGrad { try layerInputs(x)[l] }
            try layers[l].updateGrid(from: input, margin: margin)
        }
    }

    /// Per layer, the mean over the sample of `|φ_ji(x_i)|`: `[out, in]` tensors (differentiable).
    public func edgeScores(_ x: Tensor) throws -> [Tensor] {
        let inputs = try layerInputs(x)
        return try zip(layers, inputs).map { layer, input in try layer.edgeActivations(input).abs().mean(axes: [0]) }
    }

    /// The KAN paper's sparsity regulariser on a sample `x`: for every layer with edge scores
    /// `A = mean |φ|` (`[out, in]`), `l1 · ΣA + entropy · (−Σ p log p)` with `p = A / ΣA`, summed
    /// over layers. A scalar to add to the loss.
    public func regularizationLoss(_ x: Tensor, l1: Double = 1, entropy: Double = 1) throws -> Tensor {
        var total: Tensor?
        for a in try edgeScores(x) {
            let sum = try a.sum()
            let p = try a / (sum + 1e-12)
            let term = try l1 * sum - entropy * (p * (p + 1e-12).log()).sum()
            total = try total.map { try $0 + term } ?? term
        }
        return total ?? Tensor.scalar(0)
    }

    /// Scores of the hidden nodes on a sample: for the node `j` between layers `l` and `l+1`,
    /// `incoming = max_i A_l[j, i]` and `outgoing = max_k A_{l+1}[k, j]` (one array per hidden layer).
    public func nodeScores(_ x: Tensor) throws -> [(incoming: [Double], outgoing: [Double])] {
        let scores = try Tensor.withNoGrad { try edgeScores(x) }.map { ($0.toDoubleArray(), $0.shape) }
        return (0..<Swift.max(layers.count - 1, 0)).map { l in
            let (a, sa) = scores[l], (b, sb) = scores[l + 1]
            let incoming = (0..<sa[0]).map { j in (0..<sa[1]).map { a[j * sa[1] + $0] }.max() ?? 0 }
            let outgoing = (0..<sb[1]).map { j in (0..<sb[0]).map { b[$0 * sb[1] + j] }.max() ?? 0 }
            return (incoming, outgoing)
        }
    }

    /// Pruning (KAN paper §2.5.1): removes every hidden node whose incoming or outgoing score on
    /// the sample `x` is not above `threshold` (scores as in `nodeScores`). Layer names stay
    /// `layers.<l>.*`; their shapes shrink. Returns the kept node indices of each hidden layer.
    /// Make a new optimizer afterwards.
    @discardableResult
    public func prune(_ x: Tensor, threshold: Double = 1e-2) throws -> [[Int]] {
        let scores = try nodeScores(x)
        var kept: [[Int]] = []
        for (l, s) in scores.enumerated() {
            let keep = s.incoming.indices.filter { s.incoming[$0] > threshold && s.outgoing[$0] > threshold }
            kept.append(keep)
            layers[l] = try layers[l].selecting(outputs: keep, inputs: nil)
            layers[l + 1] = try layers[l + 1].selecting(outputs: nil, inputs: keep)
        }
        return kept
    }
}
