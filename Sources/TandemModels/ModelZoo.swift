import TandemNN

/// Builds models by the names the CLI uses.
public enum ModelZoo {
    /// Classifier names `tandem train --model` and `tandem eval --model` accept.
    public static let names = ["convnet", "cifar-cnn", "kan", "mambaout-mini"]

    /// Language-model names `tandem train --model` accepts (trained on `--dataset text`).
    public static let languageModelNames = ["mamba2-lm", "gpt-lm", "llama-lm"]

    /// The dataset each model is made for.
    public static func defaultDataset(for model: String) -> String? {
        ["convnet": "mnist", "cifar-cnn": "cifar10", "kan": "mnist", "mambaout-mini": "mnist", "mamba2-lm": "text",
         "gpt-lm": "text", "llama-lm": "text"][model]
    }

    /// A freshly initialised model, or nil for an unknown name.
    public static func make(_ name: String, generator: Generator) -> (any Module)? {
        switch name {
        case "convnet": return ConvNet(generator: generator)
        case "cifar-cnn": return CIFARToyModel(generator: generator)
        // MNIST pixels normalised by mean 0.1307, std 0.3081 lie in [-0.42, 2.82]: the grid covers that.
        case "kan": return KAN([784, 64, 10], gridRange: -1...3, generator: generator)
        case "mambaout-mini": return MambaOut(.mini, inChannels: 1, numClasses: 10, generator: generator)
        default: return nil
        }
    }

    /// Sizes that override a language model's defaults (nil keeps the default).
    public struct LanguageModelSize: Sendable {
        /// Layers or blocks.
        public var layers: Int?
        /// Residual width.
        public var width: Int?
        /// Attention heads (transformers).
        public var heads: Int?
        /// The defaults.
        public init(layers: Int? = nil, width: Int? = nil, heads: Int? = nil) { (self.layers, self.width, self.heads) = (layers, width, heads) }
    }

    /// A byte-level (vocab 256) language model by name, or nil for an unknown name:
    /// - `mamba2-lm`: `languageModelConfig` (width 128, 4 layers);
    /// - `gpt-lm`: GPT-2 with nanoGPT's character configuration (6 layers, 6 heads, width 384),
    ///   positions for `context` tokens;
    /// - `llama-lm`: LLaMA, width 384, 6 layers, 6 query and 2 key/value heads, SwiGLU 1024.
    public static func makeLanguageModel(_ name: String, context: Int, size: LanguageModelSize = .init(),
                                         generator: Generator) -> (any Module)? {
        switch name {
        case "mamba2-lm":
            guard var config = languageModelConfig(name) else { return nil }
            config.nLayers = size.layers ?? config.nLayers
            config.dModel = size.width ?? config.dModel
            return Mamba2LM(config, generator: generator)
        case "gpt-lm":
            var config = GPT2Config()
            config.nPositions = context
            config.nLayer = size.layers ?? config.nLayer
            config.nEmbd = size.width ?? config.nEmbd
            config.nHead = size.heads ?? config.nHead
            return GPT2LMHeadModel(config, generator: generator)
        case "llama-lm":
            var config = LlamaConfig()
            config.numHiddenLayers = size.layers ?? config.numHiddenLayers
            config.hiddenSize = size.width ?? config.hiddenSize
            config.intermediateSize = (8 * config.hiddenSize / 3 + 31) / 32 * 32
            if let heads = size.heads {
                config.numAttentionHeads = heads
                config.numKeyValueHeads = heads % 3 == 0 ? heads / 3 : heads % 2 == 0 ? heads / 2 : heads
            }
            config.maxPositionEmbeddings = Swift.max(context, 1)
            return LlamaForCausalLM(config, generator: generator)
        default:
            return nil
        }
    }

    /// The configuration of a language model by name: `mamba2-lm` is byte-level (vocab 256),
    /// dModel 128, 4 layers, dState 32, headdim 32 (8 heads), expand 2, chunk 64.
    public static func languageModelConfig(_ name: String) -> Mamba2LM.Config? {
        guard name == "mamba2-lm" else { return nil }
        var config = Mamba2LM.Config()
        config.nLayers = 4
        return config
    }
}

/// Presents a sequence model's logits `[N, L, C]` in PyTorch's cross-entropy layout `[N, C, L]`
/// (targets `[N, L]`), so the classification `Trainer` computes loss and accuracy over every
/// position. `tokens [N, L]` → `[N, C, L]`. Children, parameters and names are the wrapped
/// model's (no prefix), so checkpoints load into the bare model.
public final class ClassFirstLogits: Module {
    /// The wrapped model (`[N, L] → [N, L, C]`).
    public let model: any Module
    /// Training mode of the wrapped model.
    public var isTraining: Bool {
        get { model.isTraining }
        set { model.isTraining = newValue }
    }

    /// Wraps `model`.
    public init(_ model: any Module) { self.model = model }

    /// The wrapped model's children.
    public var children: [(String, any Module)] { model.children }
    /// The wrapped model's own parameters.
    public var localParameters: [(String, Parameter)] { model.localParameters }
    /// The wrapped model's own buffers.
    public var localBuffers: [(String, Buffer)] { model.localBuffers }

    /// `[N, L]` → logits `[N, C, L]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try model(input).transpose(1, 2) }
}
