import ArgumentParser
import Foundation
import TandemData
import TandemDistributed
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel
import TandemTrain

/// `tandem train --model mamba2-lm --dataset text`: a byte-level language model trained with
/// AdamW on next-byte cross-entropy over every position, through the same `Trainer` as the
/// classifiers (one process or DDP), reporting test bits per character.
extension TrainCommand {
    /// The default corpus: the texts of Debian's `fortunes` package (scripts/setup.sh installs it).
    static let defaultTextCorpus = "/usr/share/games/fortunes"

    /// Checks the options that concern language models.
    func validateLanguageModelOptions() throws {
        let isLanguageModel = ModelZoo.languageModelNames.contains(model)
        if isLanguageModel, let dataset, dataset != "text" {
            throw ValidationError("--model \(model) trains on --dataset text, not '\(dataset)'")
        }
        if !isLanguageModel && dataset == "text" {
            throw ValidationError("--dataset text goes with a language model: \(ModelZoo.languageModelNames.joined(separator: ", "))")
        }
        if !isLanguageModel && dataFile != nil { throw ValidationError("--data-file is for --dataset text") }
        guard context >= 1 else { throw ValidationError("--context must be at least 1") }
    }

    /// Trains the language model `--model` on the corpus `--data-file` and prints the result
    /// (with `--json`: one object with `train_loss`, `test_bits_per_char`, `train_tokens_per_second`, ...).
    func trainLanguageModel() throws {
        let group = try startDistributed()
        defer { group?.destroy() }
        let rank = group?.rank ?? 0, worldSize = group?.worldSize ?? 1

        let path = dataFile ?? Self.defaultTextCorpus
        let corpus = try TextDataset.load(path: path)
        var train = try TextDataset(corpus: corpus, context: context, split: .train, path: path)
        train.seed = seed
        let test = try TextDataset(corpus: corpus, context: context, split: .test, path: path)

        guard let lmConfig = ModelZoo.languageModelConfig(model) else { throw ValidationError("unknown language model \(model)") }
        let lm = Mamba2LM(lmConfig, generator: Generator(seed: seed))
        var net: any Module = ClassFirstLogits(lm)
        if let group { net = try DistributedDataParallel(net, processGroup: group) }
        let optimizer = try Adam.adamW(net.parameters(), lr: lr ?? 1e-3, weightDecay: weightDecay)
        let schedule = try makeSchedule(optimizer)
        let config = trainConfig(group: group)
        let trainSampler = try DataSharding.trainSampler(count: train.count, rank: rank, worldSize: worldSize, seed: seed)
        let testSampler = try DataSharding.evalSampler(count: test.count, rank: rank, worldSize: worldSize)
        // Test batches of 64 windows keep the SSD intermediates small.
        let result = try Trainer(model: net, optimizer: optimizer, schedule: schedule,
                                 trainLoader: DataLoader(train, batchSize: batchSize, sampler: trainSampler,
                                                         numWorkers: numWorkers, dropLast: true, seed: seed),
                                 testLoader: DataLoader(test, batchSize: 64, sampler: testSampler, numWorkers: numWorkers),
                                 config: config).fit()
        guard rank == 0 else { return }
        let nats = result.testLoss ?? .nan
        let bitsPerChar = nats / Foundation.log(2.0)
        let tokensPerSecond = result.trainImagesPerSecond * Double(context)
        if json {
            var object: [String: Any] = [
                "model": model, "dataset": "text", "data_file": path, "corpus_bytes": corpus.count, "context": context,
                "world_size": worldSize, "epochs": result.epochs, "steps": result.steps, "batch_size": batchSize,
                "parameters": lm.parameters().reduce(0) { $0 + $1.value.count },
                "train_tokens_per_second": tokensPerSecond.rounded(),
                "wall_seconds": (result.wallSeconds * 100).rounded() / 100, "threads": Tandem.numThreads,
            ]
            object["train_loss"] = result.trainLoss
            object["test_loss"] = result.testLoss
            object["test_bits_per_char"] = bitsPerChar.isFinite ? bitsPerChar : nil
            object["test_accuracy"] = result.testAccuracy
            object["checkpoint"] = result.checkpointPath
            try printJSON(object)
        } else {
            print(String(format: "trained %d epochs, %d steps: train loss %.4f, test %.4f bits/char (next-byte accuracy %.4f), %.0f tokens/s, %.1f s",
                         result.epochs, result.steps, result.trainLoss ?? .nan, bitsPerChar, result.testAccuracy ?? .nan,
                         tokensPerSecond, result.wallSeconds))
            if let path = result.checkpointPath { print("checkpoint: \(path)") }
        }
    }
}

/// `tandem generate`: samples text from a trained `mamba2-lm` checkpoint with the recurrent
/// form (the prompt is prefilled with the chunked forward, then one `step` per token).
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Sample text from a trained byte-level mamba2-lm checkpoint.")

    @Option(help: "A safetensors state dict with mamba_ssm names (e.g. runs/lm/model.safetensors).") var weights: String
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
        let file = try SafeTensors.load(path: weights)
        guard let config = Mamba2LM.Config.inferred(from: file.tensors, ngroups: ngroups) else {
            throw ValidationError("'\(weights)' is not a Mamba2LM state dict (backbone.embedding.weight, backbone.layers.{i}.mixer.*, ...)")
        }
        let lm = Mamba2LM(config)
        try Checkpoint.loadWeights(path: weights, into: lm)
        lm.eval()
        let start = Date()
        let generated = try lm.generate(prompt: TextDataset.encode(prompt), count: tokens, temperature: temperature,
                                        generator: Generator(seed: seed))
        let seconds = Date().timeIntervalSince(start)
        let text = TextDataset.decode(generated)
        if json {
            let object: [String: Any] = ["prompt": prompt, "text": text, "tokens": generated.count, "temperature": temperature,
                                         "seed": seed, "tokens_per_second": (Double(generated.count) / Swift.max(seconds, 1e-9)).rounded()]
            try printJSON(object)
        } else {
            print(prompt + text)
        }
    }
}
