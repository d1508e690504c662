import Foundation
import TandemNN

/// A decoder-only language model that can continue from a key/value cache (GPT-2, LLaMA).
/// `tokens [B, L]` (int64 in `0..<vocabSize`) → logits `[B, L, vocabSize]`.
public protocol CausalLanguageModel: Module {
    /// Token ids.
    var vocabSize: Int { get }
    /// Decoder layers (entries of a `KVCache`).
    var layerCount: Int { get }
    /// Recompute each layer in the backward pass instead of keeping its activations (training).
    var checkpointActivations: Bool { get set }
    /// Logits of `tokens [B, L]` at positions `cache.length ..< cache.length + L` (from 0 without a
    /// cache), appending the new keys and values to `cache` when one is given.
    func forward(_ tokens: Tensor, cache: inout KVCache?) throws -> Tensor
}

extension CausalLanguageModel {
    /// `tokens [B, L]` → logits `[B, L, vocabSize]` from position 0.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        var none: KVCache? = nil
        return try forward(input, cache: &none)
    }

    /// An empty cache for this model.
    public func makeCache() -> KVCache { KVCache(layers: layerCount) }

    /// Samples `count` tokens after `prompt` (at least one token): the prompt fills the cache in one
    /// forward pass, then each token is drawn from `softmax(logits / temperature)` (`argmax` at
    /// temperature 0) and fed back alone, attending to the cached keys and values.
    public func generate(prompt: [Int], count: Int, temperature: Double = 1, generator: Generator = .default) throws -> [Int] {
        guard !prompt.isEmpty, count >= 0, temperature >= 0 else {
            throw TensorError.invalidArgument(op: "generate", message: "needs a non-empty prompt, count ≥ 0 and temperature ≥ 0")
        }
        return try Tensor.withNoGrad {
            var cache: KVCache? = makeCache()
            var logits = try forward(Tensor(int64: prompt, shape: [1, prompt.count]), cache: &cache)
                .narrow(axis: 1, start: prompt.count - 1, length: 1)
            var out: [Int] = []
            for _ in 0..<count {
                let token = Mamba2LM.sample(logits.toDoubleArray(), temperature: temperature, generator: generator)
                out.append(token)
                if out.count == count { break }
                logits = try forward(Tensor(int64: [token], shape: [1, 1]), cache: &cache)
            }
            return out
        }
    }
}

/// Input checks shared by the decoders.
enum TransformerChecks {
    /// The length of int64 `tokens [B, L]` with ids in `0..<vocab`.
    static func tokens(_ tokens: Tensor, vocab: Int, model: String) throws -> Int {
        guard tokens.rank == 2, tokens.dtype == .int64, tokens.shape[1] >= 1 else {
            throw TensorError.invalidArgument(op: model, message: "expects int64 token ids [batch, length], got \(tokens.dtype) \(tokens.shape)")
        }
        return tokens.shape[1]
    }
}
