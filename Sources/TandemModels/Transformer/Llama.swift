import Foundation
import TandemNN

/// Sizes of a LLaMA model, named as in transformers' `LlamaConfig`.
public struct LlamaConfig: Equatable, Sendable {
    /// Token ids.
    public var vocabSize = 256
    /// Residual width.
    public var hiddenSize = 384
    /// SwiGLU width.
    public var intermediateSize = 1024
    /// Decoder layers.
    public var numHiddenLayers = 6
    /// Query heads.
    public var numAttentionHeads = 6
    /// Key/value heads (fewer than the query heads: grouped-query attention; 1: multi-query).
    public var numKeyValueHeads = 2
    /// Longest context the model is meant for (RoPE itself has no table to outgrow).
    public var maxPositionEmbeddings = 2048
    /// RMSNorm epsilon.
    public var rmsNormEps = 1e-6
    /// RoPE base θ.
    public var ropeTheta = 10_000.0
    /// Standard deviation of the initial weights.
    public var initializerRange = 0.02
    /// Whether `lm_head` shares `model.embed_tokens.weight`.
    public var tieWordEmbeddings = false

    /// A small byte-level default: width 384, 6 layers, 6 query and 2 key/value heads, SwiGLU 1024.
    public init() {}

    /// Channels per head.
    public var headDim: Int { hiddenSize / numAttentionHeads }

    /// A bias-free projection `input → output` with weights N(0, initializerRange²), as transformers initialises LLaMA.
    func projection(_ input: Int, _ output: Int, generator: Generator) -> Linear {
        Linear(weight: Parameter(Tensor.normal([output, input], std: initializerRange, generator: generator)))
    }
}

/// LLaMA's attention: `q_proj`, `k_proj`, `v_proj` (grouped-query), rotary embeddings, causal
/// attention, `o_proj`; no biases. `[B, L, hidden] → [B, L, hidden]`.
public final class LlamaAttention: Module {
    /// Projections, PyTorch `Linear` layout.
    public let qProj: Linear, kProj: Linear, vProj: Linear, oProj: Linear
    /// Head counts and RoPE base.
    public let heads: Int, kvHeads: Int, ropeTheta: Double
    /// Training mode (no effect).
    public var isTraining = true

    init(_ config: LlamaConfig, generator: Generator) {
        let (e, d) = (config.hiddenSize, config.headDim)
        func linear(_ input: Int, _ output: Int) -> Linear { config.projection(input, output, generator: generator) }
        qProj = linear(e, config.numAttentionHeads * d)
        kProj = linear(e, config.numKeyValueHeads * d)
        vProj = linear(e, config.numKeyValueHeads * d)
        oProj = linear(config.numAttentionHeads * d, e)
        (heads, kvHeads, ropeTheta) = (config.numAttentionHeads, config.numKeyValueHeads, config.ropeTheta)
    }

    public var children: [(String, any Module)] { [("q_proj", qProj), ("k_proj", kProj), ("v_proj", vProj), ("o_proj", oProj)] }

    /// From position 0, no cache.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        var none: DecoderAttention.LayerCache? = nil
        return try forward(input, cache: &none)
    }

    func forward(_ x: Tensor, cache: inout DecoderAttention.LayerCache?) throws -> Tensor {
        try oProj(DecoderAttention.attend(q: qProj(x), k: kProj(x), v: vProj(x), heads: heads, kvHeads: kvHeads,
                                          ropeTheta: ropeTheta, cache: &cache))
    }
}

/// LLaMA's MLP: `down_proj(swiglu(gate_proj(x), up_proj(x)))`, no biases.
public final class LlamaMLP: Module {
    /// `hidden → intermediate` (gate, up) and `intermediate → hidden` (down).
    public let gateProj: Linear, upProj: Linear, downProj: Linear
    /// Training mode (no effect).
    public var isTraining = true

    init(_ config: LlamaConfig, generator: Generator) {
        let (e, m) = (config.hiddenSize, config.intermediateSize)
        func linear(_ input: Int, _ output: Int) -> Linear { config.projection(input, output, generator: generator) }
        (gateProj, upProj, downProj) = (linear(e, m), linear(e, m), linear(m, e))
    }

    public var children: [(String, any Module)] { [("gate_proj", gateProj), ("up_proj", upProj), ("down_proj", downProj)] }

    /// `[..., hidden] → [..., hidden]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try downProj(Tensor.swiglu(gate: gateProj(input), up: upProj(input)))
    }
}

/// One LLaMA decoder layer: `x + self_attn(input_layernorm(x))`, then `+ mlp(post_attention_layernorm(·))`.
public final class LlamaDecoderLayer: DecoderLayer {
    /// Attention.
    public let selfAttn: LlamaAttention
    /// SwiGLU MLP.
    public let mlp: LlamaMLP
    /// RMSNorms before attention and MLP.
    public let inputLayernorm: RMSNorm, postAttentionLayernorm: RMSNorm
    /// Training mode (no effect).
    public var isTraining = true

    /// A layer initialised like transformers' LLaMA (weights N(0, 0.02²), norms 1).
    public init(_ config: LlamaConfig, generator: Generator = .default) {
        selfAttn = LlamaAttention(config, generator: generator)
        mlp = LlamaMLP(config, generator: generator)
        inputLayernorm = RMSNorm([config.hiddenSize], eps: config.rmsNormEps)
        postAttentionLayernorm = RMSNorm([config.hiddenSize], eps: config.rmsNormEps)
    }

    public var children: [(String, any Module)] {
        [("self_attn", selfAttn), ("mlp", mlp), ("input_layernorm", inputLayernorm), ("post_attention_layernorm", postAttentionLayernorm)]
    }

    /// From position 0, no cache: `[B, L, hidden]` → same.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        var none: DecoderAttention.LayerCache? = nil
        return try forward(input, cache: &none)
    }

    func forward(_ x: Tensor, cache: inout DecoderAttention.LayerCache?) throws -> Tensor {
        let h = try x + selfAttn.forward(inputLayernorm(x), cache: &cache)
        return try h + mlp(postAttentionLayernorm(h))
    }
}

/// A LLaMA decoder with transformers' `LlamaForCausalLM` names: `model.embed_tokens`,
/// `model.layers.{i}` (`self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`, `input_layernorm`,
/// `post_attention_layernorm`), `model.norm`, `lm_head`. `tokens [B, L]` → logits `[B, L, vocab]`.
public final class LlamaForCausalLM: CausalLanguageModel {
    /// The sizes.
    public let config: LlamaConfig
    /// Token table `[vocab, hidden]`.
    public let embedTokens: Embedding
    /// The decoder layers.
    public let layers: [LlamaDecoderLayer]
    /// Final RMSNorm.
    public let norm: RMSNorm
    /// `hidden → vocab`, no bias (shares `embed_tokens.weight` when tied).
    public let lmHead: Linear
    /// Training mode (no effect).
    public var isTraining = true
    /// Recompute each layer in the backward pass instead of keeping its activations.
    public var checkpointActivations = false
    private let trunk: LlamaTrunk

    /// A model initialised like transformers' LLaMA.
    public init(_ config: LlamaConfig = LlamaConfig(), generator: Generator = .default) {
        self.config = config
        embedTokens = Embedding(config.vocabSize, config.hiddenSize, generator: generator)
        embedTokens.weight.value = Tensor.normal([config.vocabSize, config.hiddenSize], std: config.initializerRange,
                                                 generator: generator).requiringGrad()
        layers = (0..<config.numHiddenLayers).map { _ in LlamaDecoderLayer(config, generator: generator) }
        norm = RMSNorm([config.hiddenSize], eps: config.rmsNormEps)
        lmHead = config.tieWordEmbeddings ? Linear(weight: embedTokens.weight)
            : config.projection(config.hiddenSize, config.vocabSize, generator: generator)
        trunk = LlamaTrunk(embedTokens: embedTokens, layers: Sequential(layers), norm: norm)
    }

    /// `model`, then `lm_head`.
    public var children: [(String, any Module)] { [("model", trunk), ("lm_head", lmHead)] }

    /// Token ids.
    public var vocabSize: Int { config.vocabSize }
    /// Layers (one cache entry each).
    public var layerCount: Int { config.numHiddenLayers }

    /// Logits `[B, L, vocab]` of `tokens [B, L]` at positions `cache.length ..< cache.length + L`.
    public func forward(_ tokens: Tensor, cache: inout KVCache?) throws -> Tensor {
        _ = try TransformerChecks.tokens(tokens, vocab: config.vocabSize, model: "LlamaForCausalLM")
        let x = try DecoderAttention.run(layers, embedTokens(tokens), cache: &cache, checkpointing: checkpointActivations && isTraining)
        return try lmHead(norm(x))
    }
}

/// The `model` child of `LlamaForCausalLM` (for its names: `embed_tokens`, `layers`, `norm`).
final class LlamaTrunk: Module {
    let embedTokens: Embedding, layers: Sequential, norm: RMSNorm
    var isTraining = true
    init(embedTokens: Embedding, layers: Sequential, norm: RMSNorm) { (self.embedTokens, self.layers, self.norm) = (embedTokens, layers, norm) }
    var children: [(String, any Module)] { [("embed_tokens", embedTokens), ("layers", layers), ("norm", norm)] }
    func callAsFunction(_ input: Tensor) throws -> Tensor {
        throw TensorError.invalidArgument(op: "LlamaForCausalLM.model", message: "call the LlamaForCausalLM, not its trunk")
    }
}
