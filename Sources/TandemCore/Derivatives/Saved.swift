/// What an op's forward pass keeps for its gradient rule (PyTorch's `ctx`).
struct Saved: @unchecked Sendable {
    /// The inputs, detached: present when the rule keeps them (`Derivatives.keeps`).
    let inputs: [Tensor]
    /// Every input's shape and dtype, and whether it requires a gradient.
    let shapes: [[Int]]
    let dtypes: [DType]
    let needs: [Bool]
    /// The output, detached: present when the rule keeps it.
    let output: Tensor?
    let outputDType: DType
    /// The op's attributes: axes, integers (offsets, sizes), a shape, scalars, extra tensors
    /// (indices, probabilities), and a backend's state for a native backward pass.
    let axes: [Int]
    let ints: [Int]
    let shape: [Int]
    let scalars: [Double]
    let tensors: [Tensor]
    let state: (any Sendable)?

    /// Input `i`, detached (the rule must keep inputs).
    func input(_ i: Int) -> Tensor { inputs[i] }
    /// The output, detached (the rule must keep it).
    var out: Tensor { output! }
}

/// What a rule needs of the forward pass besides its attributes.
struct Keep: OptionSet, Sendable {
    let rawValue: Int
    static let inputs = Keep(rawValue: 1)
    static let output = Keep(rawValue: 2)
    static let nothing: Keep = []
}
