import Foundation
import TandemNN

/// One residual layer of `Mamba2LM` (mamba_ssm's `Block` without an MLP):
/// `x + mixer(norm(x))`, `x [batch, length, dModel]` → `[batch, length, dModel]`.
/// Children (PyTorch names): `mixer` (a `Mamba2` block), `norm` (RMSNorm, eps 1e-5).
public final class Mamba2LMLayer: Module {
    /// The Mamba-2 mixer.
    public let mixer: Mamba2
    /// Pre-norm over `dModel` channels.
    public let norm: RMSNorm
    /// Training mode (the layer behaves the same in both modes).
    public var isTraining = true

    /// A layer around `mixer`, with an RMSNorm of `mixer.dModel` channels.
    public init(mixer: Mamba2, normEps: Double = 1e-5) {
        self.mixer = mixer
        norm = RMSNorm([mixer.dModel], eps: normEps)
    }

    /// `mixer`, then `norm` (the reference registers them in that order).
    public var children: [(String, any Module)] { [("mixer", mixer), ("norm", norm)] }

    /// `x [batch, length, dModel]` → `x + mixer(norm(x))`, from zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try input + mixer(norm(input)) }

    /// The chunked form continuing from and into `cache` (prefill; see `Mamba2.callAsFunction(_:cache:)`).
    public func callAsFunction(_ input: Tensor, cache: inout Mamba2.InferenceCache?) throws -> Tensor {
        try input + mixer(norm(input), cache: &cache)
    }

    /// One token: `x [batch, dModel]` → `[batch, dModel]`, advancing `cache`.
    public func step(_ input: Tensor, cache: inout Mamba2.InferenceCache) throws -> Tensor {
        try input + mixer.step(norm(input), cache: &cache)
    }
}

/// The trunk of `Mamba2LM` (mamba_ssm's `MixerModel`): token embedding, residual Mamba-2
/// layers, final RMSNorm. `tokens [batch, length]` (int64) → hidden states `[batch, length, dModel]`.
/// Children (PyTorch names): `embedding`, `layers.{i}`, `norm_f`.
public final class Mamba2LMBackbone: Module {
    /// `[vocabSize, dModel]` lookup table.
    public let embedding: Embedding
    /// The residual layers, in order.
    public let layers: [Mamba2LMLayer]
    /// Final RMSNorm over `dModel` channels.
    public let normF: RMSNorm
    /// Training mode (the trunk behaves the same in both modes).
    public var isTraining = true
    private let layerList: Sequential

    /// A trunk from its parts.
    public init(embedding: Embedding, layers: [Mamba2LMLayer], normF: RMSNorm) {
        self.embedding = embedding
        self.layers = layers
        self.normF = normF
        layerList = Sequential(layers)
    }

    /// `embedding`, `layers` (children `0`, `1`, ...), `norm_f`.
    public var children: [(String, any Module)] { [("embedding", embedding), ("layers", layerList), ("norm_f", normF)] }

    /// `tokens [batch, length]` → `[batch, length, dModel]`, from zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try normF(layers.reduce(embedding(input)) { try $1($0) })
    }
}

/// A Mamba-2 language model with PyTorch names like mamba_ssm's `MambaLMHeadModel`:
/// `logits = lm_head(norm_f(layers(embedding(tokens))))` where each layer is `x + mixer(norm(x))`.
/// `tokens [batch, length]` (int64 in `0..<vocabSize`) → logits `[batch, length, vocabSize]`.
///
/// The head is tied to the embedding: `lm_head.weight` is the same parameter as
/// `backbone.embedding.weight` (`[vocabSize, dModel]`). `namedParameters()` lists it once (as
/// `backbone.embedding.weight`); `stateDict()` lists it under both names with the same values,
/// like PyTorch; `loadStateDict` accepts either name.
///
/// Training uses the chunked SSD form (`callAsFunction`); generation prefills a prompt into
/// per-layer `Mamba2.InferenceCache`s (`forward(_:caches:)`) and continues token by token with
/// the recurrent form (`step`), which gives the same logits.
public final class Mamba2LM: Module {
    /// Sizes of a `Mamba2LM`.
    public struct Config: Equatable, Sendable {
        /// Number of token ids (256 for byte-level text).
        public var vocabSize = 256
        /// Residual stream width.
        public var dModel = 128
        /// Number of residual layers.
        public var nLayers = 2
        /// SSM state size N of each mixer.
        public var dState = 32
        /// Causal conv width of each mixer.
        public var dConv = 4
        /// Mixer expansion (`dInner = expand · dModel`).
        public var expand = 2
        /// Channels per SSM head.
        public var headdim = 32
        /// Groups sharing B and C.
        public var ngroups = 1
        /// SSD chunk length used by the chunked forward.
        public var chunkSize = 64
        /// Epsilon of the RMSNorms (mamba_ssm's `norm_epsilon`).
        public var normEps = 1e-5

        /// The defaults: vocab 256, dModel 128, 2 layers, dState 32, headdim 32, chunk 64.
        public init() {}

        /// The configuration a state dict with mamba_ssm names was saved from (vocab and dModel
        /// from the embedding, layer count from `backbone.layers.{i}.norm.weight`, and the mixer
        /// sizes from its parameters). `ngroups` cannot be read from shapes and is given;
        /// `chunkSize` does not change the function and keeps its default. Nil when a name is missing.
        public static func inferred(from state: [String: Tensor], ngroups: Int = 1) -> Config? {
            guard let embedding = state["backbone.embedding.weight"] ?? state["lm_head.weight"], embedding.rank == 2 else { return nil }
            var config = Config()
            (config.vocabSize, config.dModel) = (embedding.shape[0], embedding.shape[1])
            config.nLayers = 0
            while state["backbone.layers.\(config.nLayers).norm.weight"] != nil { config.nLayers += 1 }
            let p = "backbone.layers.0.mixer."
            guard config.nLayers > 0, let norm = state[p + "norm.weight"], let d = state[p + "D"],
                  let conv = state[p + "conv1d.weight"], conv.rank == 3, d.count > 0, ngroups > 0 else { return nil }
            let dInner = norm.count
            guard dInner % config.dModel == 0, dInner % d.count == 0, (conv.shape[0] - dInner) % (2 * ngroups) == 0 else { return nil }
            config.expand = dInner / config.dModel
            config.headdim = dInner / d.count
            config.dConv = conv.shape[2]
            config.ngroups = ngroups
            config.dState = (conv.shape[0] - dInner) / (2 * ngroups)
            return config
        }
    }

    /// The sizes this model was built with.
    public let config: Config
    /// Embedding, layers and final norm (`backbone.*`).
    public let backbone: Mamba2LMBackbone
    /// `dModel → vocabSize` without bias, weight tied to `backbone.embedding.weight`.
    public let lmHead: Linear
    /// Training mode (the model behaves the same in both modes).
    public var isTraining = true

    /// A model initialised like mamba_ssm's `MambaLMHeadModel`: embedding ~ N(0, 0.02²), mixers
    /// with the Mamba-2 reference initialisation, each `out_proj.weight` divided by √nLayers
    /// (`rescale_prenorm_residual`), norms at 1, the head tied to the embedding.
    public init(_ config: Config = Config(), generator: Generator = .default) {
        self.config = config
        let embedding = Embedding(config.vocabSize, config.dModel, generator: generator)
        embedding.weight.value = Tensor.normal([config.vocabSize, config.dModel], std: 0.02, generator: generator).requiringGrad()
        let layers = (0..<config.nLayers).map { _ in
            let mixer = Mamba2(dModel: config.dModel, dState: config.dState, dConv: config.dConv, expand: config.expand,
                               headdim: config.headdim, ngroups: config.ngroups, chunkSize: config.chunkSize, generator: generator)
            let w = mixer.outProj.weight
            w.value = (try! w.value.detach() * (1 / Double(config.nLayers).squareRoot())).requiringGrad()
            return Mamba2LMLayer(mixer: mixer, normEps: config.normEps)
        }
        backbone = Mamba2LMBackbone(embedding: embedding, layers: layers, normF: RMSNorm([config.dModel], eps: config.normEps))
        lmHead = Linear(weight: embedding.weight)
    }

    /// `backbone`, then `lm_head` (whose weight is the embedding's).
    public var children: [(String, any Module)] { [("backbone", backbone), ("lm_head", lmHead)] }

    /// `tokens [batch, length]` (int64) → logits `[batch, length, vocabSize]`, chunked form from zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try checkTokens(input, rank: 2)
        return try lmHead(backbone(input))
    }

    /// Empty per-layer caches (the state before the first token) for `batchSize` sequences.
    public func makeCaches(batchSize: Int, dtype: DType = .float32) -> [Mamba2.InferenceCache] {
        backbone.layers.map { $0.mixer.makeCache(batchSize: batchSize, dtype: dtype) }
    }

    /// Prefill: the chunked forward of `tokens [batch, length]` continuing from `caches` (one per
    /// layer; zero state when nil), returning logits `[batch, length, vocabSize]` and leaving in
    /// `caches` the state after the last token, ready for `step`.
    public func forward(_ tokens: Tensor, caches: inout [Mamba2.InferenceCache]?) throws -> Tensor {
        try checkTokens(tokens, rank: 2)
        if let given = caches, given.count != backbone.layers.count {
            throw TensorError.invalidArgument(op: "Mamba2LM", message: "got \(given.count) caches for \(backbone.layers.count) layers")
        }
        var x = try backbone.embedding(tokens)
        var next: [Mamba2.InferenceCache] = []
        for (i, layer) in backbone.layers.enumerated() {
            var cache = caches?[i]
            x = try layer(x, cache: &cache)
            if let cache { next.append(cache) }
        }
        caches = next
        return try lmHead(backbone.normF(x))
    }

    /// One token per sequence through the recurrent form: `tokens [batch]` (int64) → logits
    /// `[batch, vocabSize]`, advancing each layer's cache. Equals the chunked forward's logits
    /// at that position.
    public func step(_ tokens: Tensor, caches: inout [Mamba2.InferenceCache]) throws -> Tensor {
        try checkTokens(tokens, rank: 1)
        guard caches.count == backbone.layers.count else {
            throw TensorError.invalidArgument(op: "Mamba2LM.step", message: "got \(caches.count) caches for \(backbone.layers.count) layers")
        }
        var x = try backbone.embedding(tokens)
        for (i, layer) in backbone.layers.enumerated() { x = try layer.step(x, cache: &caches[i]) }
        return try lmHead(backbone.normF(x))
    }

    /// Samples `count` tokens after `prompt` (at least one token): the prompt is prefilled with the
    /// chunked forward, then each token is drawn from `softmax(logits / temperature)` and fed back
    /// through `step`. `temperature` 0 picks the most likely token (greedy). Returns the new tokens.
    public func generate(prompt: [Int], count: Int, temperature: Double = 1, generator: Generator = .default) throws -> [Int] {
        guard !prompt.isEmpty, count >= 0, temperature >= 0 else {
            throw TensorError.invalidArgument(op: "Mamba2LM.generate", message: "needs a non-empty prompt, count ≥ 0 and temperature ≥ 0")
        }
        return try Tensor.withNoGrad {
            var caches: [Mamba2.InferenceCache]? = nil
            var logits = try forward(Tensor(int64: prompt, shape: [1, prompt.count]), caches: &caches).narrow(axis: 1, start: prompt.count - 1, length: 1).reshape([1, config.vocabSize])
            var state = caches ?? []
            var out: [Int] = []
            for _ in 0..<count {
                let token = Self.sample(logits.toDoubleArray(), temperature: temperature, generator: generator)
                out.append(token)
                if out.count == count { break }
                logits = try step(Tensor(int64: [token]), caches: &state)
            }
            return out
        }
    }

    /// Draws an index from `softmax(logits / temperature)` (`argmax` when temperature is 0).
    static func sample(_ logits: [Double], temperature: Double, generator: Generator) -> Int {
        guard temperature > 0 else { return logits.indices.max { logits[$0] < logits[$1] } ?? 0 }
        let top = logits.max() ?? 0
        let weights = logits.map { Foundation.exp(($0 - top) / temperature) }
        var u = Double(generator.next() >> 11) / Double(1 << 53) * weights.reduce(0, +)
        for (i, w) in weights.enumerated() {
            u -= w
            if u < 0 { return i }
        }
        return weights.count - 1
    }

    private func checkTokens(_ tokens: Tensor, rank: Int) throws {
        guard tokens.rank == rank, tokens.dtype == .int64 else {
            throw TensorError.invalidArgument(op: "Mamba2LM", message: "expects int64 token ids of rank \(rank), got \(tokens.dtype) \(tokens.shape)")
        }
    }
}
