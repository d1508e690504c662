/// Zeroes elements with probability `p` in training and scales the rest by 1/(1-p).
public final class Dropout: Module {
    public let p: Double
    public let generator: Generator
    public var isTraining = true
    public init(p: Double = 0.5, generator: Generator = .default) { self.p = p; self.generator = generator }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard isTraining, p > 0 else { return input }
        guard p < 1 else { return try input * 0 }
        let keep = Tensor.bernoulli(input.shape, p: 1 - p, dtype: input.dtype, generator: generator)
        return try input * keep * (1 / (1 - p))
    }
}

/// A lookup table: integer indices `[...]` → `[..., embeddingDim]`. Weight ~ N(0, 1) as in PyTorch.
public final class Embedding: Module {
    public let weight: Parameter
    public var isTraining = true
    public init(_ numEmbeddings: Int, _ embeddingDim: Int, generator: Generator = .default) {
        weight = Parameter(Tensor.randn([numEmbeddings, embeddingDim], generator: generator))
    }
    public var localParameters: [(String, Parameter)] { [("weight", weight)] }
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try Tensor.embedding(input, weight: weight.value) }
}

/// SiLU activation.
public final class SiLU: Module {
    public var isTraining = true
    public init() {}
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try input.silu() }
}

/// GELU activation (exact erf form, or the tanh approximation).
public final class GELU: Module {
    public let approximate: Tensor.GeluApproximation
    public var isTraining = true
    public init(approximate: Tensor.GeluApproximation = .none) { self.approximate = approximate }
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try input.gelu(approximate: approximate) }
}

/// Tanh activation.
public final class Tanh: Module {
    public var isTraining = true
    public init() {}
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try input.tanh() }
}

/// Sigmoid activation.
public final class Sigmoid: Module {
    public var isTraining = true
    public init() {}
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try input.sigmoid() }
}
