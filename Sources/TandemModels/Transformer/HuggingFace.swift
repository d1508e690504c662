import Foundation
import TandemNN

/// Reads and writes the folders transformers' `save_pretrained` makes (`config.json` and
/// `model.safetensors`) for `GPT2LMHeadModel` and `LlamaForCausalLM`. Tandem's parameter names
/// and layouts are the Hugging Face ones (GPT-2's projections are stored `[in, out]` by
/// `TransposedLinear`, as transformers' `Conv1D`), so tensors move unchanged; a tied `lm_head`
/// is not stored, as transformers does not store it.
public enum HuggingFace {
    /// What went wrong with a checkpoint folder.
    public enum Error: Swift.Error, CustomStringConvertible {
        case missingFile(String)
        case badConfig(path: String, message: String)
        case unsupported(modelType: String)
        case weightsMismatch(path: String, message: String)

        public var description: String {
            switch self {
            case let .missingFile(path):
                return "\(path) does not exist: a Hugging Face folder holds config.json and model.safetensors (save_pretrained(..., safe_serialization=True))"
            case let .badConfig(path, message): return "\(path): \(message)"
            case let .unsupported(type):
                return "model_type '\(type)' is not supported; Tandem reads gpt2 (GPT2LMHeadModel) and llama (LlamaForCausalLM)"
            case let .weightsMismatch(path, message): return "\(path) does not fit its config.json: \(message)"
            }
        }
    }

    /// The model saved in `directory`, with its weights (float32).
    public static func load(directory: String) throws -> any CausalLanguageModel {
        let configPath = directory + "/config.json", weightsPath = directory + "/model.safetensors"
        for path in [configPath, weightsPath] where !FileManager.default.fileExists(atPath: path) {
            if path == weightsPath, FileManager.default.fileExists(atPath: directory + "/model.safetensors.index.json") {
                throw Error.badConfig(path: directory, message: "sharded checkpoints (model.safetensors.index.json) are not supported; save with a larger max_shard_size")
            }
            throw Error.missingFile(path)
        }
        let json = try readConfig(configPath)
        let model: any CausalLanguageModel
        switch json["model_type"] as? String ?? "" {
        case "gpt2": model = GPT2LMHeadModel(try gpt2Config(json, path: configPath))
        case "llama": model = LlamaForCausalLM(try llamaConfig(json, path: configPath))
        case let other: throw Error.unsupported(modelType: other)
        }
        let file = try SafeTensors.load(path: weightsPath)
        // Buffers older transformers versions stored; they are recomputed, not learned.
        var state: [String: Tensor] = [:]
        for (name, tensor) in file.tensors
        where !(name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") || name.hasSuffix("rotary_emb.inv_freq")) {
            state[name] = tensor.dtype == .float32 ? tensor : tensor.to(.float32)
        }
        do {
            try model.loadStateDict(state)
        } catch let error as ModuleError {
            throw Error.weightsMismatch(path: weightsPath, message: error.description)
        }
        return model
    }

    /// Writes `model` to `directory` (created if needed) as transformers saves it: `config.json`
    /// and `model.safetensors` (float32, the tied `lm_head.weight` left out), each atomically.
    public static func save(_ model: any CausalLanguageModel, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config: [String: Any]
        let tied: Bool
        switch model {
        case let gpt as GPT2LMHeadModel: (config, tied) = (gpt2JSON(gpt.config), gpt.config.tieWordEmbeddings)
        case let llama as LlamaForCausalLM: (config, tied) = (llamaJSON(llama.config), llama.config.tieWordEmbeddings)
        default: throw Error.unsupported(modelType: String(describing: type(of: model)))
        }
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: directory + "/config.json")
        let tensors = model.stateDict().filter { !(tied && $0.0 == "lm_head.weight") }
            .map { name, tensor in (name, tensor.dtype == .float32 ? tensor : tensor.to(.float32)) }
        try SafeTensors.save(tensors, metadata: ["format": "pt"], to: directory + "/model.safetensors")
    }

    // MARK: - config.json

    private static func readConfig(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw Error.badConfig(path: path, message: "not a JSON object")
        }
        return json
    }

    private static func int(_ json: [String: Any], _ key: String, path: String, default value: Int? = nil) throws -> Int {
        if let number = json[key] as? NSNumber, number.doubleValue == number.doubleValue.rounded(), number.intValue > 0 {
            return number.intValue
        }
        if json[key] == nil || json[key] is NSNull, let value { return value }
        throw Error.badConfig(path: path, message: "'\(key)' must be a positive integer, got \(json[key].map { "\($0)" } ?? "nothing")")
    }

    private static func double(_ json: [String: Any], _ key: String, default value: Double) throws -> Double {
        (json[key] as? NSNumber)?.doubleValue ?? value
    }

    private static func gpt2Config(_ json: [String: Any], path: String) throws -> GPT2Config {
        var c = GPT2Config()
        c.vocabSize = try int(json, "vocab_size", path: path)
        c.nPositions = try int(json, "n_positions", path: path)
        c.nEmbd = try int(json, "n_embd", path: path)
        c.nLayer = try int(json, "n_layer", path: path)
        c.nHead = try int(json, "n_head", path: path)
        c.nInner = json["n_inner"] is NSNumber ? try int(json, "n_inner", path: path) : nil
        c.layerNormEpsilon = try double(json, "layer_norm_epsilon", default: 1e-5)
        c.initializerRange = try double(json, "initializer_range", default: 0.02)
        c.tieWordEmbeddings = json["tie_word_embeddings"] as? Bool ?? true
        let activation = json["activation_function"] as? String ?? "gelu_new"
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
            throw Error.badConfig(path: path, message: "activation_function '\(activation)' is not supported (gelu_new)")
        }
        guard c.nEmbd % c.nHead == 0 else { throw Error.badConfig(path: path, message: "n_embd \(c.nEmbd) is not a multiple of n_head \(c.nHead)") }
        return c
    }

    private static func llamaConfig(_ json: [String: Any], path: String) throws -> LlamaConfig {
        var c = LlamaConfig()
        c.vocabSize = try int(json, "vocab_size", path: path)
        c.hiddenSize = try int(json, "hidden_size", path: path)
        c.intermediateSize = try int(json, "intermediate_size", path: path)
        c.numHiddenLayers = try int(json, "num_hidden_layers", path: path)
        c.numAttentionHeads = try int(json, "num_attention_heads", path: path)
        c.numKeyValueHeads = try int(json, "num_key_value_heads", path: path, default: c.numAttentionHeads)
        c.maxPositionEmbeddings = try int(json, "max_position_embeddings", path: path, default: 2048)
        c.rmsNormEps = try double(json, "rms_norm_eps", default: 1e-6)
        c.ropeTheta = try double(json, "rope_theta", default: (json["rope_parameters"] as? [String: Any]).flatMap { try? double($0, "rope_theta", default: 10_000) } ?? 10_000)
        c.initializerRange = try double(json, "initializer_range", default: 0.02)
        c.tieWordEmbeddings = json["tie_word_embeddings"] as? Bool ?? false
        for key in ["attention_bias", "mlp_bias"] where json[key] as? Bool == true {
            throw Error.badConfig(path: path, message: "\(key) = true is not supported")
        }
        if let type = (json["rope_parameters"] as? [String: Any])?["rope_type"] as? String, type != "default" {
            throw Error.badConfig(path: path, message: "rope_type '\(type)' is not supported (default)")
        }
        if let scaling = json["rope_scaling"], !(scaling is NSNull) {
            throw Error.badConfig(path: path, message: "rope_scaling is not supported")
        }
        if let act = json["hidden_act"] as? String, act != "silu" { throw Error.badConfig(path: path, message: "hidden_act '\(act)' is not supported (silu)") }
        if let headDim = json["head_dim"] as? NSNumber, headDim.intValue != c.hiddenSize / c.numAttentionHeads {
            throw Error.badConfig(path: path, message: "head_dim \(headDim) ≠ hidden_size / num_attention_heads is not supported")
        }
        guard c.hiddenSize % c.numAttentionHeads == 0, c.numAttentionHeads % c.numKeyValueHeads == 0 else {
            throw Error.badConfig(path: path, message: "hidden_size must be a multiple of num_attention_heads, and that of num_key_value_heads")
        }
        return c
    }

    private static func gpt2JSON(_ c: GPT2Config) -> [String: Any] {
        var json: [String: Any] = [
            "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": c.vocabSize, "n_positions": c.nPositions,
            "n_ctx": c.nPositions, "n_embd": c.nEmbd, "n_layer": c.nLayer, "n_head": c.nHead, "activation_function": "gelu_new",
            "layer_norm_epsilon": c.layerNormEpsilon, "initializer_range": c.initializerRange, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "tie_word_embeddings": c.tieWordEmbeddings, "torch_dtype": "float32", "bos_token_id": c.vocabSize - 1,
            "eos_token_id": c.vocabSize - 1,
        ]
        json["n_inner"] = c.nInner ?? NSNull()
        return json
    }

    private static func llamaJSON(_ c: LlamaConfig) -> [String: Any] {
        [
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": c.vocabSize, "hidden_size": c.hiddenSize,
            "intermediate_size": c.intermediateSize, "num_hidden_layers": c.numHiddenLayers, "num_attention_heads": c.numAttentionHeads,
            "num_key_value_heads": c.numKeyValueHeads, "max_position_embeddings": c.maxPositionEmbeddings, "rms_norm_eps": c.rmsNormEps,
            "rope_theta": c.ropeTheta, "hidden_act": "silu", "attention_bias": false, "mlp_bias": false, "initializer_range": c.initializerRange,
            "tie_word_embeddings": c.tieWordEmbeddings, "torch_dtype": "float32", "head_dim": c.headDim,
        ]
    }
}
