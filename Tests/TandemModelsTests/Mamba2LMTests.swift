import Foundation
import Testing
import TandemModels
import TandemNN
import TandemOptim
import TandemTestSupport

/// The Mamba-2 language model: mamba_ssm names with a tied head, recurrent generation equal
/// to the chunked forward, and a few optimizer steps that lower the loss.
@Suite struct Mamba2LMTests {
    static func tiny(layers: Int = 2, chunk: Int = 4) -> Mamba2LM {
        var c = Mamba2LM.Config()
        (c.vocabSize, c.dModel, c.nLayers, c.dState, c.headdim, c.chunkSize) = (11, 8, layers, 4, 4, chunk)
        return Mamba2LM(c, generator: Generator(seed: 7))
    }

    static func tokens(_ shape: [Int], vocab: Int = 11, seed: UInt64 = 1) -> Tensor {
        let g = Generator(seed: seed)
        return Tensor(int64: (0..<shape.reduce(1, *)).map { _ in Int(g.next() % UInt64(vocab)) }, shape: shape)
    }

    @Test func namesFollowMambaLMHeadModel() throws {
        let lm = Self.tiny()
        let names = lm.stateDict().map(\.0)
        let mixer = ["dt_bias", "A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias", "norm.weight", "out_proj.weight"]
        let expected = ["backbone.embedding.weight"]
            + (0..<2).flatMap { i in mixer.map { "backbone.layers.\(i).mixer.\($0)" } + ["backbone.layers.\(i).norm.weight"] }
            + ["backbone.norm_f.weight", "lm_head.weight"]
        #expect(names == expected)
        // The tied weight: one parameter (optimizers see it once), two state-dict entries, same values.
        #expect(lm.parameters().count == expected.count - 1)
        #expect(!lm.namedParameters().map(\.0).contains("lm_head.weight"))
        #expect(lm.lmHead.weight === lm.backbone.embedding.weight)
        let state = Dictionary(uniqueKeysWithValues: lm.stateDict())
        #expect(state["lm_head.weight"]!.toDoubleArray() == state["backbone.embedding.weight"]!.toDoubleArray())
        #expect(state["lm_head.weight"]!.shape == [11, 8])
        // Reference initialisation: embedding std 0.02, out_proj scaled by 1/√nLayers.
        let e = state["backbone.embedding.weight"]!.toDoubleArray()
        #expect(e.map { $0 * $0 }.reduce(0, +) / Double(e.count) < 0.03 * 0.03)
        let bound = 1 / Double(16).squareRoot() / Double(2).squareRoot()
        #expect(state["backbone.layers.0.mixer.out_proj.weight"]!.toDoubleArray().allSatisfy { Swift.abs($0) <= bound + 1e-7 })
    }

    @Test func loadingAcceptsEitherTiedName() throws {
        let source = Self.tiny(), target = Self.tiny(layers: 2)
        for p in target.parameters() { try p.value.copyValues(from: Tensor.zeros(p.shape)) }
        var state = Dictionary(uniqueKeysWithValues: source.stateDict())
        let embedding = state["backbone.embedding.weight"]!
        // Both names (PyTorch's state_dict), only the head's name, only the embedding's name.
        try target.loadStateDict(state)
        #expect(target.lmHead.weight.value.toDoubleArray() == embedding.toDoubleArray())
        state["backbone.embedding.weight"] = nil
        for p in target.parameters() { try p.value.copyValues(from: Tensor.zeros(p.shape)) }
        try target.loadStateDict(state)
        #expect(target.backbone.embedding.weight.value.toDoubleArray() == embedding.toDoubleArray())
        state["backbone.embedding.weight"] = embedding
        state["lm_head.weight"] = nil
        try target.loadStateDict(state)
        // Neither name: missing, under the first name.
        state["backbone.embedding.weight"] = nil
        #expect(throws: ModuleError.stateDictMismatch(missing: ["backbone.embedding.weight"], unexpected: [])) {
            try target.loadStateDict(state)
        }
        #expect(Mamba2LM.Config.inferred(from: Dictionary(uniqueKeysWithValues: source.stateDict())) == {
            var c = source.config
            c.chunkSize = Mamba2LM.Config().chunkSize
            return c
        }())
    }

    @Test func recurrentGenerationEqualsChunkedForward() throws {
        let lm = Self.tiny(chunk: 4)
        let x = Self.tokens([2, 10])
        let full = try lm(x)                                       // [2, 10, 11], chunks of 4 (10 is not a multiple)
        #expect(full.shape == [2, 10, 11])
        // Prefill the first 3 tokens with the chunked form, then step through the rest.
        var caches: [Mamba2.InferenceCache]? = nil
        let prefill = try lm.forward(x.narrow(axis: 1, start: 0, length: 3), caches: &caches)
        var state = caches!
        var stepped = [prefill]
        for t in 3..<10 {
            stepped.append(try lm.step(x.narrow(axis: 1, start: t, length: 1).reshape([2]), caches: &state).unsqueeze(1))
        }
        let recurrent = try Tensor.cat(stepped, axis: 1)
        let diff = zip(full.toDoubleArray(), recurrent.toDoubleArray()).map { Swift.abs($0 - $1) }.max() ?? .infinity
        #expect(diff < 1e-4, "max |chunked − recurrent| = \(diff)")
        // Pure stepping from empty caches gives the same logits too.
        var fresh = lm.makeCaches(batchSize: 2)
        let first = try lm.step(x.narrow(axis: 1, start: 0, length: 1).reshape([2]), caches: &fresh)
        let diff0 = zip(first.toDoubleArray(), try full.narrow(axis: 1, start: 0, length: 1).toDoubleArray()).map { Swift.abs($0 - $1) }.max()!
        #expect(diff0 < 1e-5)
    }

    @Test func greedyGenerationFollowsTheChunkedArgmax() throws {
        let lm = Self.tiny()
        let prompt = [1, 2, 3]
        let generated = try lm.generate(prompt: prompt, count: 6, temperature: 0)
        #expect(generated.count == 6)
        // Each greedy token is the argmax of the chunked forward over prompt + tokens so far.
        var sequence = prompt
        for token in generated {
            let logits = try lm(Tensor(int64: sequence, shape: [1, sequence.count]))
            let last = try logits.narrow(axis: 1, start: sequence.count - 1, length: 1).reshape([11]).argmax(axis: 0)
            #expect(Int(try last.item()) == token)
            sequence.append(token)
        }
        // Sampling is reproducible from the seed.
        let a = try lm.generate(prompt: prompt, count: 8, temperature: 0.8, generator: Generator(seed: 5))
        let b = try lm.generate(prompt: prompt, count: 8, temperature: 0.8, generator: Generator(seed: 5))
        #expect(a == b && a.allSatisfy { (0..<11).contains($0) })
    }

    @Test func adamWLowersTheLoss() throws {
        let lm = Self.tiny()
        // A periodic sequence is easy to predict.
        let x = Tensor(int64: (0..<2 * 17).map { $0 % 5 }, shape: [2, 17])
        let (input, target) = (try x.narrow(axis: 1, start: 0, length: 16), try x.narrow(axis: 1, start: 1, length: 16))
        let opt = try Adam.adamW(lm.parameters(), lr: 1e-2)
        func loss() throws -> Tensor { try Tensor.crossEntropy(lm(input).reshape([-1, 11]), target: target.reshape([-1])) }
        let before = try loss().item()
        for _ in 0..<30 {
            opt.zeroGrad()
            try loss().backward()
            try opt.step()
        }
        let after = try loss().item()
        #expect(after < before * 0.5, "loss \(before) → \(after)")
        // The tied weight stayed tied.
        #expect(lm.lmHead.weight === lm.backbone.embedding.weight)
    }
}
