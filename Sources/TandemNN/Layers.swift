import Foundation

/// PyTorch's default initialisation of Linear and Conv weights and biases:
/// kaiming_uniform(a: √5) = U(-1/√fanIn, 1/√fanIn) for both.
enum DefaultInit {
    static func uniform(_ shape: [Int], fanIn: Int, generator: Generator) -> Tensor {
        let bound = fanIn > 0 ? 1 / Double(fanIn).squareRoot() : 0
        return Tensor.uniform(shape, low: -bound, high: bound, generator: generator)
    }
}

/// `y = x · Wᵀ + b`: `[..., inFeatures] → [..., outFeatures]`. Parameters `weight`
/// `[outFeatures, inFeatures]` and `bias` `[outFeatures]`.
public final class Linear: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public var isTraining = true

    /// A layer initialised like PyTorch's `nn.Linear`.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: Generator = .default) {
        weight = Parameter(DefaultInit.uniform([outFeatures, inFeatures], fanIn: inFeatures, generator: generator))
        self.bias = bias ? Parameter(DefaultInit.uniform([outFeatures], fanIn: inFeatures, generator: generator)) : nil
    }

    /// A layer over existing parameters, e.g. a language model's head tied to its embedding
    /// (`weight [outFeatures, inFeatures]` shared with `Embedding.weight [vocab, dim]`).
    public init(weight: Parameter, bias: Parameter? = nil) {
        precondition(weight.shape.count == 2 && bias.map { $0.shape == [weight.shape[0]] } ?? true,
                     "Linear: weight must be [out, in] and bias [out], got \(weight.shape) and \(bias?.shape ?? [])")
        self.weight = weight
        self.bias = bias
    }

    public var localParameters: [(String, Parameter)] { [("weight", weight)] + (bias.map { [("bias", $0)] } ?? []) }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try Tensor.linear(input, weight: weight.value, bias: bias?.value)
    }
}

/// A module whose children can be swapped (e.g. by `convertSyncBatchNorm`).
public protocol ReplaceableChildren: Module {
    /// Replaces the direct child called `name`; unknown names are ignored.
    func replaceChild(named name: String, with module: any Module)
}

/// Runs modules in order; children are named "0", "1", ... as in PyTorch.
public final class Sequential: Module, ReplaceableChildren {
    public private(set) var layers: [any Module]

    public func replaceChild(named name: String, with module: any Module) {
        if let i = Int(name), layers.indices.contains(i) { layers[i] = module }
    }

    public var isTraining = true

    public init(_ layers: [any Module]) { self.layers = layers }

    public convenience init(_ layers: any Module...) { self.init(layers) }

    public var children: [(String, any Module)] { layers.enumerated().map { ("\($0.offset)", $0.element) } }

    /// Runs the layers in order. (For fused conv blocks, see `ConvBlocks` and `fuseConvBlocks(in:)`.)
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try layers.reduce(input) { try $1($0) }
    }
}

/// ReLU activation (no parameters).
public final class ReLU: Module {
    public var isTraining = true
    public init() {}
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try input.relu() }
}

/// Flattens all dimensions after the first: `[N, ...] → [N, prod(...)]`.
public final class Flatten: Module {
    public var isTraining = true
    public init() {}
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try input.flatten(start: 1) }
}
