/// The element-wise ops of Transformer layers: rotary position embeddings, SwiGLU and dropout
/// whose mask is a function of a seed.
extension Tensor {
    /// Rotary position embeddings (RoPE) with the Hugging Face LLaMA convention ("rotate half"):
    /// for `x [..., L, D]` (D even, e.g. `[batch, heads, L, headDim]`) and halves x₁, x₂ of the
    /// last dimension, `out = (x₁·cos − x₂·sin, x₂·cos + x₁·sin)` with angle p·θ^(−2i/D) for the
    /// position p of the row and the pair i. `positions` has L entries (e.g. `start..<start + L`
    /// when decoding with a cache). Float32/float64; gradients flow to `x`.
    public static func rotaryEmbedding(_ x: Tensor, positions: [Int], theta: Double = 10_000) throws -> Tensor {
        try Dispatch.run(.rotaryEmbedding, x) { x in
            let op = "rotaryEmbedding"
            try Kernels.requireFloat(x, op)
            guard x.rank >= 2, let d = x.shape.last, d % 2 == 0, x.shape[x.rank - 2] == positions.count else {
                throw TensorError.shapeMismatch(op: op, message: "x must be [..., L, D] with D even and L = \(positions.count) positions, got \(x.shape)")
            }
            guard theta > 0, theta.isFinite else { throw TensorError.invalidArgument(op: op, message: "theta must be > 0, got \(theta)") }
            let (cos, sin) = Kernels.rotaryTables(positions: positions, headDim: d, theta: theta)
            let out = Kernels.rotary(x.contiguousStorage(), cos: cos, sin: sin, length: positions.count, inverse: false)
            return Dispatch.record(.rotaryEmbedding, out, inputs: [x], state: RotaryTables(cos: cos, sin: sin, length: positions.count))
        }
    }

    /// `rotaryEmbedding` at positions `start ..< start + L`.
    public static func rotaryEmbedding(_ x: Tensor, start: Int = 0, theta: Double = 10_000) throws -> Tensor {
        let length = x.rank >= 2 ? x.shape[x.rank - 2] : 0
        return try rotaryEmbedding(x, positions: Array(start..<start + length), theta: theta)
    }

    /// SwiGLU, `silu(gate) · up` (same shapes): the gated unit of LLaMA's MLP.
    public static func swiglu(gate: Tensor, up: Tensor) throws -> Tensor {
        guard gate.shape == up.shape else {
            throw TensorError.shapeMismatch(op: "swiglu", message: "gate \(gate.shape) and up \(up.shape) must have one shape")
        }
        return try gate.silu() * up
    }

    /// Dropout whose mask is a hash of `seed` and the element's index: zeroes each element with
    /// probability `p` and scales the rest by 1/(1 − p). The same seed and shape give the same
    /// mask on every machine and thread count, and the backward pass regenerates it (nothing is
    /// stored). `training: false` or `p == 0` returns `x`.
    public static func dropout(_ x: Tensor, p: Double, seed: UInt64, training: Bool = true) throws -> Tensor {
        guard p >= 0, p <= 1 else { throw TensorError.invalidArgument(op: "dropout", message: "p must be in [0, 1], got \(p)") }
        guard training, p > 0 else { return x }
        if p == 1 { return try x * 0 }
        return try Dispatch.run(.dropout, x) { x in
            try Kernels.requireFloat(x, "dropout")
            let out = Kernels.seededDropout(x.contiguousStorage(), p: p, seed: seed)
            return Dispatch.record(.dropout, out, inputs: [x], ints: [Int(Int64(bitPattern: seed))], scalars: [p])
        }
    }
}

/// The cos/sin tables of one rotary embedding (kept for its backward pass).
struct RotaryTables: Sendable {
    let cos: [Double], sin: [Double], length: Int
}
