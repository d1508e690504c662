import Foundation
import TandemNN

/// Sizes of a GPT-2 model, named as in transformers' `GPT2Config`.
public struct GPT2Config: Equatable, Sendable {
    /// Token ids (256 for byte-level text; 50257 for OpenAI's GPT-2).
    public var vocabSize = 256
    /// Longest context (rows of the learned position table `wpe`).
    public var nPositions = 256
    /// Residual width.
    public var nEmbd = 384
    /// Blocks.
    public var nLayer = 6
    /// Attention heads (`nEmbd` a multiple of it).
    public var nHead = 6
    /// MLP width (nil: 4 · nEmbd).
    public var nInner: Int? = nil
    /// LayerNorm epsilon.
    public var layerNormEpsilon = 1e-5
    /// Standard deviation of the initial weights.
    public var initializerRange = 0.02
    /// Whether `lm_head` shares `transformer.wte.weight` (GPT-2 always does).
    public var tieWordEmbeddings = true

    /// nanoGPT's character-level configuration at byte level: 6 layers, 6 heads, width 384, context 256.
    public init() {}
}

/// transformers' `Conv1D`: `y = x · W + b` with `weight [inFeatures, outFeatures]` (the transpose
/// of `Linear`'s layout, as GPT-2 checkpoints store it) and `bias [outFeatures]`:
/// `[..., inFeatures] → [..., outFeatures]`.
public final class TransposedLinear: Module {
    /// `[inFeatures, outFeatures]`.
    public let weight: Parameter
    /// `[outFeatures]`.
    public let bias: Parameter
    /// Training mode (no effect).
    public var isTraining = true

    /// Weight ~ N(0, std²), bias 0 (GPT-2's initialisation).
    public init(_ inFeatures: Int, _ outFeatures: Int, std: Double, generator: Generator) {
        weight = Parameter(Tensor.normal([inFeatures, outFeatures], std: std, generator: generator))
        bias = Parameter(Tensor.zeros([outFeatures]))
    }

    public var localParameters: [(String, Parameter)] { [("weight", weight), ("bias", bias)] }

    /// `[..., in] → [..., out]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try Tensor.linear(input, weight: weight.value.t(), bias: bias.value)
    }
}

/// GPT-2's causal self-attention: `c_attn` (one projection to q, k, v), `nHead` heads, `c_proj`.
/// `[B, L, nEmbd] → [B, L, nEmbd]`.
public final class GPT2Attention: Module {
    /// `nEmbd → 3·nEmbd` (q, k, v in that order).
    public let cAttn: TransposedLinear
    /// `nEmbd → nEmbd`.
    public let cProj: TransposedLinear
    /// Heads.
    public let heads: Int
    /// Training mode (no effect).
    public var isTraining = true

    init(_ config: GPT2Config, generator: Generator) {
        cAttn = TransposedLinear(config.nEmbd, 3 * config.nEmbd, std: config.initializerRange, generator: generator)
        // GPT-2 scales the residual projections by 1/√(2·nLayer).
        cProj = TransposedLinear(config.nEmbd, config.nEmbd, std: config.initializerRange / (2 * Double(config.nLayer)).squareRoot(),
                                 generator: generator)
        heads = config.nHead
    }

    public var children: [(String, any Module)] { [("c_attn", cAttn), ("c_proj", cProj)] }

    /// Causal self-attention from position 0.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        var none: DecoderAttention.LayerCache? = nil
        return try forward(input, cache: &none)
    }

    func forward(_ x: Tensor, cache: inout DecoderAttention.LayerCache?) throws -> Tensor {
        let qkv = try cAttn(x)
        let e = x.shape[2]
        let (q, k, v) = (try qkv.narrow(axis: 2, start: 0, length: e), try qkv.narrow(axis: 2, start: e, length: e),
                         try qkv.narrow(axis: 2, start: 2 * e, length: e))
        return try cProj(DecoderAttention.attend(q: q, k: k, v: v, heads: heads, kvHeads: heads, ropeTheta: nil, cache: &cache))
    }
}

/// GPT-2's MLP: `c_fc` (`nEmbd → nInner`), GELU (tanh approximation, transformers' "gelu_new"), `c_proj`.
public final class GPT2MLP: Module {
    /// `nEmbd → nInner`.
    public let cFc: TransposedLinear
    /// `nInner → nEmbd`.
    public let cProj: TransposedLinear
    /// Training mode (no effect).
    public var isTraining = true

    init(_ config: GPT2Config, generator: Generator) {
        let inner = config.nInner ?? 4 * config.nEmbd
        cFc = TransposedLinear(config.nEmbd, inner, std: config.initializerRange, generator: generator)
        cProj = TransposedLinear(inner, config.nEmbd, std: config.initializerRange / (2 * Double(config.nLayer)).squareRoot(),
                                 generator: generator)
    }

    public var children: [(String, any Module)] { [("c_fc", cFc), ("c_proj", cProj)] }

    /// `[..., nEmbd] → [..., nEmbd]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try cProj(cFc(input).gelu(approximate: .tanh)) }
}

/// One pre-norm GPT-2 block: `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`. `[B, L, nEmbd]` → same.
public final class GPT2Block: DecoderLayer {
    /// Norm before attention.
    public let ln1: LayerNorm
    /// Causal self-attention.
    public let attn: GPT2Attention
    /// Norm before the MLP.
    public let ln2: LayerNorm
    /// The MLP.
    public let mlp: GPT2MLP
    /// Training mode (no effect).
    public var isTraining = true

    /// A block initialised like transformers' GPT-2.
    public init(_ config: GPT2Config, generator: Generator = .default) {
        ln1 = LayerNorm([config.nEmbd], eps: config.layerNormEpsilon)
        attn = GPT2Attention(config, generator: generator)
        ln2 = LayerNorm([config.nEmbd], eps: config.layerNormEpsilon)
        mlp = GPT2MLP(config, generator: generator)
    }

    public var children: [(String, any Module)] { [("ln_1", ln1), ("attn", attn), ("ln_2", ln2), ("mlp", mlp)] }

    /// From position 0, no cache.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        var none: DecoderAttention.LayerCache? = nil
        return try forward(input, cache: &none)
    }

    func forward(_ x: Tensor, cache: inout DecoderAttention.LayerCache?) throws -> Tensor {
        let h = try x + attn.forward(ln1(x), cache: &cache)
        return try h + mlp(ln2(h))
    }
}

/// GPT-2 with a language-model head, with transformers' `GPT2LMHeadModel` names: `transformer.wte`
/// (tokens), `transformer.wpe` (learned positions), `transformer.h.{i}` (blocks), `transformer.ln_f`,
/// and `lm_head` tied to `wte` (listed once by `namedParameters()`, under both names by
/// `stateDict()`). Projection weights are stored `[in, out]` as in the Hugging Face files, so a
/// `model.safetensors` of transformers loads unchanged. `tokens [B, L]` (int64) → logits `[B, L, vocab]`.
public final class GPT2LMHeadModel: CausalLanguageModel {
    /// The sizes.
    public let config: GPT2Config
    /// Token table `[vocab, nEmbd]`.
    public let wte: Embedding
    /// Position table `[nPositions, nEmbd]`.
    public let wpe: Embedding
    /// The blocks.
    public let blocks: [GPT2Block]
    /// Final norm.
    public let lnF: LayerNorm
    /// `nEmbd → vocab` without bias (weight shared with `wte` when tied).
    public let lmHead: Linear
    /// Training mode (no effect on the function; dropout is not used).
    public var isTraining = true
    /// Recompute each block in the backward pass instead of keeping its activations.
    public var checkpointActivations = false
    private let trunk: GPT2Trunk

    /// A model initialised like transformers' GPT-2 (weights N(0, 0.02²), residual projections
    /// scaled by 1/√(2·nLayer), norms 1 and 0, biases 0).
    public init(_ config: GPT2Config = GPT2Config(), generator: Generator = .default) {
        self.config = config
        wte = Embedding(config.vocabSize, config.nEmbd, generator: generator)
        wte.weight.value = Tensor.normal([config.vocabSize, config.nEmbd], std: config.initializerRange, generator: generator).requiringGrad()
        wpe = Embedding(config.nPositions, config.nEmbd, generator: generator)
        wpe.weight.value = Tensor.normal([config.nPositions, config.nEmbd], std: config.initializerRange, generator: generator).requiringGrad()
        blocks = (0..<config.nLayer).map { _ in GPT2Block(config, generator: generator) }
        lnF = LayerNorm([config.nEmbd], eps: config.layerNormEpsilon)
        lmHead = config.tieWordEmbeddings ? Linear(weight: wte.weight)
            : Linear(config.nEmbd, config.vocabSize, bias: false, generator: generator)
        trunk = GPT2Trunk(wte: wte, wpe: wpe, h: Sequential(blocks), lnF: lnF)
    }

    /// `transformer`, then `lm_head`.
    public var children: [(String, any Module)] { [("transformer", trunk), ("lm_head", lmHead)] }

    /// Token ids.
    public var vocabSize: Int { config.vocabSize }
    /// Layers (one cache entry each).
    public var layerCount: Int { config.nLayer }

    /// Logits `[B, L, vocab]` of `tokens [B, L]` at positions `cache.length ..< cache.length + L`,
    /// appending the keys and values to `cache` when one is given.
    public func forward(_ tokens: Tensor, cache: inout KVCache?) throws -> Tensor {
        let start = cache?.length ?? 0
        let l = try TransformerChecks.tokens(tokens, vocab: config.vocabSize, model: "GPT2LMHeadModel")
        guard start + l <= config.nPositions else {
            throw TensorError.invalidArgument(op: "GPT2LMHeadModel", message: "positions up to \(start + l) exceed the \(config.nPositions) the model has (n_positions); use a shorter context")
        }
        let positions = Tensor(int64: Array(start..<start + l), shape: [1, l])
        let x = try DecoderAttention.run(blocks, wte(tokens) + wpe(positions), cache: &cache, checkpointing: checkpointActivations && isTraining)
        return try lmHead(lnF(x))
    }
}

/// The `transformer` child of `GPT2LMHeadModel` (for its names: `wte`, `wpe`, `h`, `ln_f`).
final class GPT2Trunk: Module {
    let wte: Embedding, wpe: Embedding, h: Sequential, lnF: LayerNorm
    var isTraining = true
    init(wte: Embedding, wpe: Embedding, h: Sequential, lnF: LayerNorm) { (self.wte, self.wpe, self.h, self.lnF) = (wte, wpe, h, lnF) }
    var children: [(String, any Module)] { [("wte", wte), ("wpe", wpe), ("h", h), ("ln_f", lnF)] }
    func callAsFunction(_ input: Tensor) throws -> Tensor {
        throw TensorError.invalidArgument(op: "GPT2LMHeadModel.transformer", message: "call the GPT2LMHeadModel, not its trunk")
    }
}
