import Foundation
import Testing
@testable import TandemModels
import TandemNN
import TandemTestSupport

/// GPT-2 and LLaMA: one block of each against transformers (outputs and every gradient, float64),
/// incremental decoding against the full forward pass, and activation checkpointing.
@Suite struct TransformerLMTests {
    static func tinyGPT(seed: UInt64 = 1) -> GPT2LMHeadModel {
        var config = GPT2Config()
        (config.vocabSize, config.nPositions, config.nEmbd, config.nLayer, config.nHead) = (61, 40, 32, 2, 4)
        config.initializerRange = 0.2
        return GPT2LMHeadModel(config, generator: Generator(seed: seed))
    }

    static func tinyLlama(seed: UInt64 = 1) -> LlamaForCausalLM {
        var config = LlamaConfig()
        (config.vocabSize, config.hiddenSize, config.intermediateSize, config.numHiddenLayers) = (61, 32, 48, 2)
        (config.numAttentionHeads, config.numKeyValueHeads, config.initializerRange) = (4, 2, 0.2)
        return LlamaForCausalLM(config, generator: Generator(seed: seed))
    }

    /// Sets `module`'s parameters to the golden `<prefix>param.<name>` values (float64).
    static func load(_ module: any Module, from golden: SafeTensors.File, prefix: String) throws {
        for (name, parameter) in module.namedParameters() {
            parameter.value = try golden.tensor(prefix + "param." + name).requiringGrad()
        }
    }

    @Test(arguments: ["gpt2_block", "llama_block"]) func blockMatchesTransformers(name: String) throws {
        let golden = try Golden.load("transformer_ops")
        let block: any Module
        if name == "gpt2_block" {
            var config = GPT2Config()
            (config.nEmbd, config.nHead, config.nLayer) = (32, 4, 1)
            block = GPT2Block(config)
        } else {
            var config = LlamaConfig()
            (config.hiddenSize, config.intermediateSize, config.numAttentionHeads, config.numKeyValueHeads) = (32, 48, 4, 2)
            block = LlamaDecoderLayer(config)
        }
        try Self.load(block, from: golden, prefix: name + ".")
        let x = try golden.tensor(name + ".x").requiringGrad()
        let out = try block(x)
        try out.backward(golden.tensor(name + ".upstream"))
        #expect(try golden.mismatch(out, name + ".out", rtol: 1e-9, atol: 1e-11) == nil)
        #expect(try golden.mismatch(x.grad, name + ".grad_x", rtol: 1e-9, atol: 1e-11) == nil)
        for (parameterName, parameter) in block.namedParameters() {
            #expect(try golden.mismatch(parameter.grad, name + ".grad." + parameterName, rtol: 1e-9, atol: 1e-11) == nil, "\(parameterName)")
        }
    }

    /// Prefill with a prompt, then one token at a time and a chunk of three (the causal mask
    /// offset by the cache): every position's logits equal the full forward pass's.
    @Test(arguments: ["gpt", "llama"]) func cachedDecodingEqualsTheFullForward(kind: String) throws {
        let model: any CausalLanguageModel = kind == "gpt" ? Self.tinyGPT() : Self.tinyLlama()
        model.eval()
        let ids = (0..<12).map { ($0 * 17 + 5) % 61 }
        let full = try Tensor.withNoGrad { try model(Tensor(int64: ids, shape: [1, 12])) }
        var cache: KVCache? = model.makeCache()
        var pieces: [Tensor] = []
        try Tensor.withNoGrad {
            for (start, length) in [(0, 5), (5, 1), (6, 1), (7, 3), (10, 1), (11, 1)] {
                let chunk = Array(ids[start..<start + length])
                pieces.append(try model.forward(Tensor(int64: chunk, shape: [1, length]), cache: &cache))
            }
        }
        #expect(cache?.length == 12)
        let incremental = try Tensor.cat(pieces, axis: 1)
        #expect(Closeness.mismatch(incremental, full, rtol: 1e-5, atol: 1e-5, kind) == nil)
    }

    /// Recomputing each block in the backward pass gives the same loss and the same gradient for
    /// every parameter as keeping the activations.
    @Test(arguments: ["gpt", "llama"]) func activationCheckpointingGivesIdenticalGradients(kind: String) throws {
        let ids = Tensor(int64: (0..<30).map { ($0 * 7 + 3) % 61 }, shape: [2, 15])
        let targets = Tensor(int64: (0..<30).map { ($0 * 5 + 1) % 61 }, shape: [2, 15])
        var gradients: [[String: [Float]]] = []
        for checkpointing in [false, true] {
            let model: any CausalLanguageModel = kind == "gpt" ? Self.tinyGPT() : Self.tinyLlama()
            model.checkpointActivations = checkpointing
            let logits = try model(ids)
            let loss = try Tensor.crossEntropy(logits.reshape([30, 61]), target: targets.reshape([30]))
            try loss.backward()
            gradients.append(Dictionary(uniqueKeysWithValues: try model.namedParameters().map { ($0.0, try #require($0.1.grad).toFloatArray()) }))
        }
        #expect(gradients[0].keys.sorted() == gradients[1].keys.sorted())
        for (name, grad) in gradients[0] { #expect(grad == gradients[1][name], "\(kind) \(name)") }
    }

    /// Generation with the cache draws the same tokens as argmax over full forward passes.
    @Test func greedyGenerationFollowsTheFullForward() throws {
        let model = Self.tinyLlama(seed: 2)
        model.eval()
        let prompt = [1, 2, 3]
        let generated = try model.generate(prompt: prompt, count: 6, temperature: 0)
        var tokens = prompt
        for _ in 0..<6 {
            let logits = try Tensor.withNoGrad { try model(Tensor(int64: tokens, shape: [1, tokens.count])) }
            let last = Array(logits.toDoubleArray().suffix(61))
            tokens.append(last.indices.max { last[$0] < last[$1] }!)
        }
        #expect(generated == Array(tokens.dropFirst(3)))
    }

    /// The FLOP counter sees the block's four projections as exactly 24·D²·L, and causal attention
    /// as the tile products it runs (between half and all of 4·D·L²).
    @Test func flopCounterMatchesTheBlockFormula() throws {
        let (d, l) = (64, 96)
        var config = GPT2Config()
        (config.nEmbd, config.nHead, config.nLayer) = (d, 1, 1)
        let block = GPT2Block(config)
        let x = Tensor.randn([1, l, d], generator: Generator(seed: 1))
        let total = try Tensor.withNoGrad { try FlopCounter.count { try block(x) }.flops }
        let q = Tensor.randn([1, 1, l, d], generator: Generator(seed: 2))
        let attention = try Tensor.withNoGrad { try FlopCounter.count { try Tensor.scaledDotProductAttention(q, q, q, isCausal: true) }.flops }
        #expect(total - attention == 24 * d * d * l)
        #expect(attention >= 2 * d * l * l && attention <= 4 * d * l * l, "\(attention)")
        #expect(FlopCounter.count { 0 }.flops == 0)
    }

    @Test func wrongInputsAreTypedErrors() {
        let gpt = Self.tinyGPT()
        #expect(throws: TensorError.self) { try gpt(Tensor.zeros([2, 3])) }
        #expect(throws: TensorError.self) { try gpt(Tensor(int64: Array(repeating: 1, count: 41), shape: [1, 41])) }
        #expect(throws: TensorError.self) { try gpt(Tensor(int64: [0, 61], shape: [1, 2])) }
    }
}
