import Foundation

/// `torch.nn.MultiheadAttention` with its parameter layout: `in_proj_weight [3E, E]` (query, key
/// and value projections stacked), `in_proj_bias [3E]`, `out_proj` (Linear `E → E`), so its
/// state dict loads from PyTorch unchanged. Inputs are `[L, N, E]` (or `[N, L, E]` with
/// `batchFirst`); the output has the query's shape. Attention weights are not returned
/// (PyTorch's `need_weights=False`): the product runs in the tiled attention kernel.
public final class MultiheadAttention: Module {
    /// `[3·embedDim, embedDim]`.
    public let inProjWeight: Parameter
    /// `[3·embedDim]`, or nil without bias.
    public let inProjBias: Parameter?
    /// `embedDim → embedDim`.
    public let outProj: Linear
    /// Model width and heads (`embedDim` a multiple of `numHeads`).
    public let embedDim: Int, numHeads: Int
    /// Inputs `[N, L, E]` instead of `[L, N, E]`.
    public let batchFirst: Bool
    /// Dropout on the attention weights in training (seeded per call from `dropoutSeed`).
    public let dropout: Double
    /// The seed of the next call's dropout mask (advanced by each training call).
    public var dropoutSeed: UInt64 = 0
    /// Training mode (dropout active).
    public var isTraining = true

    /// PyTorch's initialisation: `in_proj_weight` Xavier-uniform, biases 0, `out_proj.weight` as a Linear.
    public init(embedDim: Int, numHeads: Int, dropout: Double = 0, bias: Bool = true, batchFirst: Bool = false,
                generator: Generator = .default) {
        precondition(numHeads > 0 && embedDim % numHeads == 0, "MultiheadAttention: embedDim \(embedDim) must be a multiple of numHeads \(numHeads)")
        let bound = (6 / Double(embedDim + 3 * embedDim)).squareRoot()
        inProjWeight = Parameter(Tensor.uniform([3 * embedDim, embedDim], low: -bound, high: bound, generator: generator))
        inProjBias = bias ? Parameter(Tensor.zeros([3 * embedDim])) : nil
        outProj = Linear(embedDim, embedDim, bias: bias, generator: generator)
        if let b = outProj.bias { b.value = Tensor.zeros([embedDim]).requiringGrad() }
        (self.embedDim, self.numHeads, self.batchFirst, self.dropout) = (embedDim, numHeads, batchFirst, dropout)
    }

    public var localParameters: [(String, Parameter)] {
        [("in_proj_weight", inProjWeight)] + (inProjBias.map { [("in_proj_bias", $0)] } ?? [])
    }
    public var children: [(String, any Module)] { [("out_proj", outProj)] }

    /// Self-attention of `input` (query = key = value), no mask.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try callAsFunction(input, input, input) }

    /// Attention of `query [L, N, E]` over `key`, `value [S, N, E]` (`[N, ·, E]` with `batchFirst`).
    /// - `attnMask`: `[L, S]` or `[N·H, L, S]`; boolean true marks a pair that may NOT attend
    ///   (PyTorch's convention for this module), float is added to the scores.
    /// - `keyPaddingMask`: `[N, S]` boolean, true marks a key to ignore.
    /// - `isCausal`: query `i` sees keys `0...i` (with no other mask, as a hint PyTorch also takes).
    public func callAsFunction(_ query: Tensor, _ key: Tensor, _ value: Tensor, attnMask: Tensor? = nil,
                               keyPaddingMask: Tensor? = nil, isCausal: Bool = false) throws -> Tensor {
        let op = "MultiheadAttention"
        guard query.rank == 3, key.rank == 3, value.rank == 3, query.shape.last == embedDim, key.shape.last == embedDim,
              value.shape.last == embedDim, key.shape == value.shape else {
            throw TensorError.shapeMismatch(op: op, message: "query \(query.shape), key \(key.shape), value \(value.shape) must be rank 3 with width \(embedDim), key and value alike")
        }
        // Work in [N, L, E].
        let (q, k, v) = batchFirst ? (query, key, value) : (try query.transpose(0, 1), try key.transpose(0, 1), try value.transpose(0, 1))
        let (n, l, s) = (q.shape[0], q.shape[1], k.shape[1])
        guard k.shape[0] == n else { throw TensorError.shapeMismatch(op: op, message: "query batch \(n) ≠ key batch \(k.shape[0])") }
        let w = inProjWeight.value, e = embedDim, headDim = embedDim / numHeads
        func project(_ x: Tensor, _ part: Int) throws -> Tensor {
            let weight = try w.narrow(axis: 0, start: part * e, length: e)
            let bias = try inProjBias.map { try $0.value.narrow(axis: 0, start: part * e, length: e) }
            return try Tensor.linear(x, weight: weight, bias: bias).reshape([n, x.shape[1], numHeads, headDim]).permute([0, 2, 1, 3])
        }
        let (qh, kh, vh) = (try project(q, 0), try project(k, 1), try project(v, 2))
        let mask = try additiveMask(attnMask, keyPaddingMask, n: n, l: l, s: s, dtype: qh.dtype)
        let p = isTraining ? dropout : 0
        if p > 0 { dropoutSeed &+= 1 }
        let attended = try Tensor.scaledDotProductAttention(qh, kh, vh, mask: mask, isCausal: isCausal && mask == nil,
                                                            dropout: p, seed: dropoutSeed)
        let merged = try outProj(attended.permute([0, 2, 1, 3]).reshape([n, l, e]))
        return batchFirst ? merged : try merged.transpose(0, 1).contiguous()
    }

    /// The masks as one additive float mask `[N or 1, H or 1, L, S]` (−∞ where attention is not allowed), or nil.
    private func additiveMask(_ attnMask: Tensor?, _ keyPadding: Tensor?, n: Int, l: Int, s: Int, dtype: DType) throws -> Tensor? {
        let op = "MultiheadAttention"
        func additive(_ m: Tensor) throws -> Tensor {
            guard m.dtype == .bool else { return m.dtype == dtype ? m : try m.to(dtype) }
            return try Tensor.zeros(m.shape, dtype: dtype).maskedFill(m, -.infinity)
        }
        var total: Tensor?
        if let attnMask {
            switch attnMask.shape {
            case [l, s]: total = try additive(attnMask).reshape([1, 1, l, s])
            case [n * numHeads, l, s]: total = try additive(attnMask).reshape([n, numHeads, l, s])
            default: throw TensorError.shapeMismatch(op: op, message: "attnMask \(attnMask.shape) must be [\(l), \(s)] or [\(n * numHeads), \(l), \(s)]")
            }
        }
        if let keyPadding {
            guard keyPadding.shape == [n, s] else {
                throw TensorError.shapeMismatch(op: op, message: "keyPaddingMask \(keyPadding.shape) must be [\(n), \(s)]")
            }
            let padding = try additive(keyPadding).reshape([n, 1, 1, s])
            total = try total.map { try $0 + padding } ?? padding
        }
        return total
    }
}
