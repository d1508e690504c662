import ArgumentParser
import Foundation
import TandemData
import TandemModels
import TandemNN
import TandemTrain

/// `tandem generate`: samples text from a trained byte-level language model: a `mamba2-lm`
/// checkpoint (recurrent form: the prompt is prefilled with the chunked forward, then one `step`
/// per token) or a GPT-2/LLaMA Hugging Face folder (key/value cache: the prompt fills the cache,
/// then one token per forward pass).
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Sample text from a trained byte-level language model (mamba2-lm checkpoint, or a GPT-2/LLaMA folder).")

    @Option(help: "A mamba2-lm state dict with mamba_ssm names (runs/lm/model.safetensors), or a Hugging Face folder of a byte-level GPT-2 or LLaMA (runs/gpt/hf).")
    var weights: String
    @Option(help: "Text to continue (UTF-8 bytes are the tokens).") var prompt: String = "The "
    @Option(help: "Number of tokens (bytes) to generate.") var tokens: Int = 200
    @Option(help: "Sampling temperature; 0 picks the most likely byte.") var temperature: Double = 0.8
    @Option(help: "Random seed of the sampler.") var seed: UInt64 = 0
    @Option(help: "B/C groups of the mixers (not visible in the weights' shapes).") var ngroups: Int = 1
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard !prompt.isEmpty else { throw ValidationError("--prompt must not be empty") }
        guard tokens >= 0 else { throw ValidationError("--tokens must be ≥ 0") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0") }
        guard ngroups >= 1 else { throw ValidationError("--ngroups must be at least 1") }
    }

    func run() throws {
        var isDirectory: ObjCBool = false
        let start = Date()
        let generated: [Int]
        if FileManager.default.fileExists(atPath: weights, isDirectory: &isDirectory), isDirectory.boolValue {
            let model = try HuggingFace.load(directory: weights)
            model.eval()
            guard model.vocabSize == 256 else {
                throw ValidationError("'\(weights)' has a vocabulary of \(model.vocabSize); tandem generate needs a byte-level model (256), as tandem train makes")
            }
            generated = try model.generate(prompt: TextDataset.encode(prompt), count: tokens, temperature: temperature,
                                           generator: Generator(seed: seed))
        } else {
            generated = try mamba2()
        }
        try report(generated, seconds: Date().timeIntervalSince(start))
    }

    private func mamba2() throws -> [Int] {
        let file = try SafeTensors.load(path: weights)
        guard let config = Mamba2LM.Config.inferred(from: file.tensors, ngroups: ngroups) else {
            throw ValidationError("'\(weights)' is not a Mamba2LM state dict (backbone.embedding.weight, backbone.layers.{i}.mixer.*, ...)")
        }
        let lm = Mamba2LM(config)
        try Checkpoint.loadWeights(path: weights, into: lm)
        lm.eval()
        return try lm.generate(prompt: TextDataset.encode(prompt), count: tokens, temperature: temperature, generator: Generator(seed: seed))
    }

    private func report(_ generated: [Int], seconds: Double) throws {
        let text = TextDataset.decode(generated)
        if json {
            let object: [String: Any] = ["prompt": prompt, "text": text, "tokens": generated.count, "temperature": temperature,
                                         "seed": seed, "tokens_per_second": (Double(generated.count) / Swift.max(seconds, 1e-9)).rounded()]
            try JSONValues.printLine(object)
        } else {
            print(prompt + text)
        }
    }
}
