import Foundation
import TandemCore
import TandemData
import TandemDistributed
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel

/// The learning-rate schedules a recipe can use.
public enum LRScheduler: String, CaseIterable, Sendable {
    /// A constant rate.
    case none
    /// ×0.1 after every epoch.
    case step
    /// Cosine annealing to 0 over the run.
    case cosine
}

/// What `tandem train` trains, as data: the model, the data, the optimisation settings. Each
/// recipe (`TrainingRecipes`) fills in what is left nil with its own defaults.
public struct TrainingOptions: Sendable {
    /// A classifier of `ModelZoo.names`, a language model of `ModelZoo.languageModelNames`, or
    /// `ctc-digits`.
    public var model = "convnet"
    /// mnist, cifar10, text, mnist-strings or kan-toy (nil: the model's own).
    public var dataset: String?
    /// The dataset's folder (nil: Data/mnist or Data/cifar-10-batches-bin).
    public var dataDir: String?
    /// The corpus of `text`: a UTF-8 file or a folder of fortune files (nil: Debian's fortunes).
    public var dataFile: String?
    /// Tokens per training window (`text`).
    public var context = 128
    public var epochs = 1
    /// Stop after this many optimizer steps in total.
    public var maxSteps: Int?
    /// Examples per step on each process: N processes train on a global batch of N × this.
    public var batchSize = 64
    /// The learning rate (nil: the recipe's, 0.01 for classifiers with SGD, 1e-3 for language
    /// models and 3e-3 for CTC with AdamW).
    public var lr: Double?
    /// SGD's momentum (classifiers).
    public var momentum = 0.9
    public var weightDecay = 0.0
    /// nil: the recipe's (none for classifiers and language models, cosine per step for CTC).
    public var scheduler: LRScheduler?
    /// Background data workers.
    public var numWorkers = 0
    /// Initialisation and shuffling.
    public var seed: UInt64 = 0
    /// Convert BatchNorm layers to SyncBatchNorm under DDP.
    public var syncBatchNorm = false
    /// Mixed precision: `.bfloat16` or `.float16`.
    public var amp: DType?
    /// `ctc-digits`: training and test strings.
    public var trainStrings = 20_000, testStrings = 2_000
    /// Micro-batches per optimizer step (gradient accumulation; no communication between them under DDP).
    public var gradAccum = 1
    /// Transformer language models: recompute each block in the backward pass.
    public var checkpointActivations = false
    /// Linear warm-up steps before the cosine schedule of transformer language models (nil: 1/20 of the steps, at most 100).
    public var warmupSteps: Int?
    /// Clip the global gradient norm to this (nil: the recipe's; 1 for transformer language models, 5 for CTC).
    public var clipGrad: Double?
    /// Language models: overrides of the default sizes.
    public var size = ModelZoo.LanguageModelSize()

    public init() {}

    /// The dataset the run uses.
    public var resolvedDataset: String {
        dataset ?? (model == "ctc-digits" ? "mnist-strings" : ModelZoo.defaultDataset(for: model) ?? "mnist")
    }

    /// Throws `TrainError.invalidArgument` naming the option (as its `tandem train` flag) and what to give.
    public func validate() throws {
        func fail(_ message: String) -> TrainError { .invalidArgument(message) }
        let models = ModelZoo.names + ModelZoo.languageModelNames + ["ctc-digits"]
        guard models.contains(model) else { throw fail("unknown --model '\(model)'; choose one of \(models.joined(separator: ", "))") }
        let isLanguageModel = ModelZoo.languageModelNames.contains(model)
        switch resolvedDataset {
        case "text" where !isLanguageModel:
            throw fail("--dataset text goes with a language model: \(ModelZoo.languageModelNames.joined(separator: ", "))")
        case "kan-toy" where model != "kan": throw fail("--dataset kan-toy goes with --model kan")
        case "mnist-strings" where model != "ctc-digits": throw fail("--dataset mnist-strings goes with --model ctc-digits")
        case let other where isLanguageModel && other != "text": throw fail("--model \(model) trains on --dataset text, not '\(other)'")
        case let other where model == "ctc-digits" && other != "mnist-strings":
            throw fail("--model ctc-digits trains on --dataset mnist-strings, not '\(other)'")
        default: break
        }
        if !isLanguageModel && dataFile != nil { throw fail("--data-file is for --dataset text") }
        guard context >= 1 else { throw fail("--context must be at least 1") }
        guard epochs > 0 else { throw fail("--epochs must be positive") }
        if let maxSteps, maxSteps <= 0 { throw fail("--max-steps must be positive") }
        guard batchSize > 0 else { throw fail("--batch-size must be positive") }
        if let lr, !(lr > 0 && lr.isFinite) { throw fail("--lr must be a positive number") }
        guard momentum >= 0, weightDecay >= 0 else { throw fail("--momentum and --weight-decay must be ≥ 0") }
        guard numWorkers >= 0 else { throw fail("--num-workers must be ≥ 0") }
        guard trainStrings > 0, testStrings > 0 else { throw fail("--train-strings and --test-strings must be positive") }
        if let amp, !amp.isLowPrecision { throw fail("--amp must be bf16 or fp16") }
        guard gradAccum >= 1 else { throw fail("--grad-accum must be at least 1") }
        let transformer = ["gpt-lm", "llama-lm"].contains(model)
        if checkpointActivations && !transformer { throw fail("--checkpoint-activations is for --model gpt-lm and llama-lm") }
        if let warmupSteps, warmupSteps < 0 { throw fail("--warmup-steps must be ≥ 0") }
        if let clipGrad, !(clipGrad > 0 && clipGrad.isFinite) { throw fail("--clip-grad must be a positive number") }
        for (flag, value) in [("--layers", size.layers), ("--width", size.width), ("--heads", size.heads)] {
            if let value, value < 1 { throw fail("\(flag) must be at least 1") }
            if value != nil && !isLanguageModel { throw fail("\(flag) is for language models") }
        }
        if transformer, let heads = size.heads ?? (size.width != nil ? 6 : nil), (size.width ?? 384) % heads != 0 {
            throw fail("--width \(size.width ?? 384) must be a multiple of --heads \(heads)")
        }
    }
}

/// What a recipe reports: the trainer's result, one JSON-ready summary (`tandem train --json`)
/// and the human-readable lines.
public struct TrainingReport {
    public var result: TrainResult
    public var summary: [String: Any]
    public var lines: [String]
}

/// The recipes of `tandem train`: which optimizer, defaults, schedule, data sharding, DDP
/// wrapping and task each kind of model trains with. Another Swift program gets the same runs
/// by calling `run` (after `initProcessGroup` for DDP).
public enum TrainingRecipes {
    /// Trains `options.model` as its recipe says; `config` carries the output and logging settings
    /// and the process group (a DDP run when it has more than one rank). Throws for invalid
    /// options, unreadable data, or a failed run.
    public static func run(_ options: TrainingOptions, config: TrainConfig) throws -> TrainingReport {
        try options.validate()
        if options.model == "ctc-digits" { return try ctc(options, config: config) }
        if ModelZoo.languageModelNames.contains(options.model) { return try languageModel(options, config: config) }
        return try classifier(options, config: config)
    }

    /// The model for the run: with a group, SyncBatchNorm when asked and a DDP wrapper.
    private static func distributed(_ model: any Module, _ options: TrainingOptions, _ group: (any ProcessGroup)?) throws -> any Module {
        guard let group else { return model }
        let net = options.syncBatchNorm ? try convertSyncBatchNorm(model, processGroup: group) : model
        return try DistributedDataParallel(net, processGroup: group)
    }

    private static func epochSchedule(_ scheduler: LRScheduler?, _ optimizer: any Optimizer, epochs: Int) throws -> (any LRSchedule)? {
        switch scheduler ?? .none {
        case .step: try StepLR(optimizer, stepSize: 1, gamma: 0.1)
        case .cosine: try CosineAnnealingLR(optimizer, tMax: epochs)
        case .none: nil
        }
    }

    private static func rounded(_ x: Double, _ places: Double) -> Double { (x * places).rounded() / places }

    // MARK: - Classifiers

    /// SGD (lr 0.01, momentum 0.9 unless given) on cross-entropy; the schedule per epoch.
    private static func classifier(_ options: TrainingOptions, config: TrainConfig) throws -> TrainingReport {
        let group = config.processGroup
        let rank = group?.rank ?? 0, worldSize = group?.worldSize ?? 1
        guard let model = ModelZoo.make(options.model, generator: Generator(seed: options.seed)) else {
            throw TrainError.invalidArgument("unknown model \(options.model)")
        }
        let net = try distributed(model, options, group)
        let optimizer = try SGD(net.parameters(), lr: options.lr ?? 0.01, momentum: options.momentum, weightDecay: options.weightDecay)
        let schedule = try epochSchedule(options.scheduler, optimizer, epochs: options.epochs)
        var config = config
        config.amp = options.amp
        func fit<D: Dataset, T: Dataset>(_ train: D, _ test: T) throws -> TrainResult {
            let trainSampler = try DataSharding.trainSampler(count: train.count, rank: rank, worldSize: worldSize, seed: options.seed)
            let testSampler = try DataSharding.evalSampler(count: test.count, rank: rank, worldSize: worldSize)
            return try Trainer(model: net, optimizer: optimizer, schedule: schedule,
                               trainLoader: DataLoader(train, batchSize: options.batchSize, sampler: trainSampler,
                                                       numWorkers: options.numWorkers, seed: options.seed),
                               testLoader: DataLoader(test, batchSize: 1000, sampler: testSampler, numWorkers: options.numWorkers),
                               config: config).fit()
        }
        let dataset = options.resolvedDataset
        let result: TrainResult
        if dataset == "cifar10" {
            let folder = options.dataDir ?? "Data/cifar-10-batches-bin"
            var train = try CIFAR10(folder: folder, train: true)
            train.seed = options.seed
            result = try fit(train, try CIFAR10(folder: folder, train: false))
        } else {
            let folder = options.dataDir ?? "Data/mnist"
            result = try fit(try MNIST(folder: folder, train: true), try MNIST(folder: folder, train: false))
        }
        var summary: [String: Any] = [
            "model": options.model, "dataset": dataset, "world_size": worldSize, "epochs": result.epochs, "steps": result.steps,
            "train_images_per_second": rounded(result.examplesPerSecond, 10), "wall_seconds": rounded(result.wallSeconds, 100),
            "threads": Tandem.numThreads, "batch_size": options.batchSize, "amp": options.amp.map(ampName) ?? "none",
        ]
        if options.amp == .float16 { summary["skipped_steps"] = result.skippedSteps }
        summary["test_accuracy"] = result.testAccuracy
        summary["checkpoint"] = result.checkpointPath
        var lines = [String(format: "trained %d epochs, %d steps: test accuracy %.4f, %.0f train images/s, %.1f s",
                            result.epochs, result.steps, result.testAccuracy ?? .nan, result.examplesPerSecond, result.wallSeconds)]
        if let path = result.checkpointPath { lines.append("checkpoint: \(path)") }
        return TrainingReport(result: result, summary: summary, lines: lines)
    }

    /// `--amp`'s spelling of a dtype.
    private static func ampName(_ dtype: DType) -> String { dtype == .float16 ? "fp16" : "bf16" }

    // MARK: - Language models

    /// The default corpus: the texts of Debian's `fortunes` package (scripts/setup.sh installs it).
    public static let defaultTextCorpus = "/usr/share/games/fortunes"

    /// A byte-level language model: AdamW (lr 1e-3) on next-byte cross-entropy over every
    /// position of `context`-byte windows; reports test bits per byte. Transformers (`gpt-lm`,
    /// `llama-lm`) train with weight decay 0.1 unless given, gradient clipping at 1, and a linear
    /// warm-up into a cosine schedule per step (`--scheduler none`: constant after the warm-up).
    private static func languageModel(_ options: TrainingOptions, config: TrainConfig) throws -> TrainingReport {
        let group = config.processGroup
        let rank = group?.rank ?? 0, worldSize = group?.worldSize ?? 1
        let path = options.dataFile ?? defaultTextCorpus
        let corpus = try TextDataset.load(path: path)
        var train = try TextDataset(corpus: corpus, context: options.context, split: .train, path: path)
        train.seed = options.seed
        let test = try TextDataset(corpus: corpus, context: options.context, split: .test, path: path)
        guard let lm = ModelZoo.makeLanguageModel(options.model, context: options.context, size: options.size,
                                                  generator: Generator(seed: options.seed)) else {
            throw TrainError.invalidArgument("unknown language model \(options.model)")
        }
        let isTransformer = lm is any CausalLanguageModel
        if options.checkpointActivations, let decoder = lm as? any CausalLanguageModel { decoder.checkpointActivations = true }
        let net = try distributed(ClassFirstLogits(lm), options, group)
        let optimizer = try Adam.adamW(net.parameters(), lr: options.lr ?? 1e-3,
                                       weightDecay: isTransformer && options.weightDecay == 0 ? 0.1 : options.weightDecay)
        var config = config
        config.amp = options.amp
        config.gradientAccumulation = options.gradAccum
        config.checkpointMetadata["model"] = options.model
        let trainSampler = try DataSharding.trainSampler(count: train.count, rank: rank, worldSize: worldSize, seed: options.seed)
        let testSampler = try DataSharding.evalSampler(count: test.count, rank: rank, worldSize: worldSize)
        // Test batches of 64 windows keep the SSD intermediates small.
        let task = ClassificationTask(trainLoader: try DataLoader(train, batchSize: options.batchSize, sampler: trainSampler,
                                                                  numWorkers: options.numWorkers, dropLast: true, seed: options.seed),
                                      testLoader: try DataLoader(test, batchSize: isTransformer ? 16 : 64, sampler: testSampler,
                                                                 numWorkers: options.numWorkers),
                                      exampleName: "windows")
        let schedule: (any LRSchedule)?
        if isTransformer && options.scheduler != .step {
            let totalSteps = Swift.max(1, Swift.min(options.maxSteps ?? Int.max, options.epochs * (task.batchesPerEpoch / options.gradAccum)))
            schedule = try warmupCosine(optimizer, totalSteps: totalSteps, warmup: options.warmupSteps ?? Swift.min(100, totalSteps / 20),
                                        cosine: options.scheduler != LRScheduler.none)
            config.scheduleStep = .perStep
            config.clipNorm = options.clipGrad ?? 1
        } else {
            schedule = try epochSchedule(options.scheduler, optimizer, epochs: options.epochs)
            config.clipNorm = options.clipGrad
        }
        let result = try Trainer(model: net, optimizer: optimizer, schedule: schedule, task: task, config: config).fit()
        // Transformers are also saved as transformers saves them (`tandem generate`/`logits` read the folder).
        var huggingFaceFolder: String?
        if let out = config.outDir, config.isLeader, let decoder = lm as? any CausalLanguageModel {
            huggingFaceFolder = out + "/hf"
            try HuggingFace.save(decoder, to: out + "/hf")
        }
        let bitsPerByte = (result.testLoss ?? .nan) / Foundation.log(2.0)
        let tokensPerSecond = result.examplesPerSecond * Double(options.context)
        var summary: [String: Any] = [
            "model": options.model, "dataset": "text", "data_file": path, "corpus_bytes": corpus.count, "context": options.context,
            "world_size": worldSize, "epochs": result.epochs, "steps": result.steps, "batch_size": options.batchSize,
            "grad_accum": options.gradAccum, "checkpoint_activations": options.checkpointActivations,
            "parameters": lm.parameters().reduce(0) { $0 + $1.value.count }, "train_tokens_per_second": tokensPerSecond.rounded(),
            "wall_seconds": rounded(result.wallSeconds, 100), "threads": Tandem.numThreads,
            "peak_rss_mib": (Double(ResourceUsage.peakResidentBytes()) / 1_048_576).rounded(),
        ]
        summary["train_loss"] = result.trainLoss
        summary["test_loss"] = result.testLoss
        summary["test_bits_per_byte"] = bitsPerByte.isFinite ? bitsPerByte : nil
        summary["test_bits_per_char"] = summary["test_bits_per_byte"]
        summary["test_accuracy"] = result.testAccuracy
        summary["checkpoint"] = result.checkpointPath
        var lines = [String(format: "trained %d epochs, %d steps: train loss %.4f, test %.4f bits/byte (next-byte accuracy %.4f), %.0f tokens/s, %.1f s",
                            result.epochs, result.steps, result.trainLoss ?? .nan, bitsPerByte, result.testAccuracy ?? .nan,
                            tokensPerSecond, result.wallSeconds)]
        if let path = result.checkpointPath { lines.append("checkpoint: \(path)") }
        if let huggingFaceFolder {
            summary["hf_folder"] = huggingFaceFolder
            lines.append("Hugging Face folder: \(huggingFaceFolder) (tandem generate --weights \(huggingFaceFolder))")
        }
        return TrainingReport(result: result, summary: summary, lines: lines)
    }

    /// Linear warm-up from lr/warmup to lr over `warmup` steps, then cosine annealing to 0 over
    /// the remaining steps (`cosine: false`: constant after the warm-up).
    static func warmupCosine(_ optimizer: any Optimizer, totalSteps: Int, warmup: Int, cosine: Bool) throws -> (any LRSchedule)? {
        let after: (any LRSchedule)? = cosine ? try CosineAnnealingLR(optimizer, tMax: Swift.max(1, totalSteps - warmup)) : nil
        guard warmup > 0 else { return after }
        let ramp = try LinearLR(optimizer, startFactor: 1 / Double(warmup), endFactor: 1, totalIters: warmup)
        guard let after else { return ramp }
        return try SequentialLR(optimizer, schedules: [ramp, after], milestones: [warmup])
    }

    // MARK: - CTC digit strings

    /// `CTCDigitRecognizer` on `MNISTStrings`: AdamW (lr 3e-3), gradient clipping at norm 5, a
    /// cosine schedule over the optimizer steps unless `scheduler` says none or step; greedy and
    /// beam-search (width 8) evaluation after training.
    private static func ctc(_ options: TrainingOptions, config: TrainConfig) throws -> TrainingReport {
        let group = config.processGroup
        let worldSize = group?.worldSize ?? 1
        let folder = options.dataDir ?? "Data/mnist"
        let loadStart = Date()
        let train = try MNISTStrings(folder: folder, train: true, count: options.trainStrings, seed: options.seed)
        let test = try MNISTStrings(folder: folder, train: false, count: options.testStrings, seed: options.seed &+ 1)
        let loadSeconds = Date().timeIntervalSince(loadStart)
        let recognizer = CTCDigitRecognizer(generator: Generator(seed: options.seed))
        let net = try distributed(recognizer, options, group)
        let rate = options.lr ?? 3e-3
        let optimizer = try Adam(net.parameters(), lr: rate, weightDecay: options.weightDecay, decoupled: true)
        let task = try CTCTask(recognizer: recognizer, train: train, test: test, batchSize: options.batchSize,
                               seed: options.seed, group: group)
        let totalSteps = Swift.min(options.maxSteps ?? Int.max, options.epochs * task.batchesPerEpoch)
        let schedule: (any LRSchedule)? = (options.scheduler ?? .cosine) == .cosine
            ? try CosineAnnealingLR(optimizer, tMax: Swift.max(totalSteps, 1)) : nil
        var config = config
        config.clipNorm = options.clipGrad ?? 5
        config.scheduleStep = .perStep
        config.evaluation = .atEnd
        config.checkpointMetadata = ["model": "ctc-digits"]
        var lines: [String] = []
        if config.showProgress && (group?.rank ?? 0) == 0 {
            let parameters = recognizer.parameters().reduce(0) { $0 + $1.value.count }
            print(String(format: "ctc-digits: %d parameters; %d train / %d test strings (%.1f s to index); %d steps of %d on %d rank(s), lr %g",
                         parameters, train.count, test.count, loadSeconds, totalSteps, options.batchSize, worldSize, rate))
        }
        let result = try Trainer(model: net, optimizer: optimizer, schedule: schedule, task: task, config: config).fit()
        let m = result.metrics
        func round4(_ x: Double?) -> Double? { x.map { rounded($0, 10_000) } }
        var summary: [String: Any] = [
            "model": "ctc-digits", "dataset": "mnist-strings", "world_size": worldSize, "epochs": result.epochs,
            "steps": result.steps, "batch_size": options.batchSize, "lr": rate, "threads": Tandem.numThreads,
            "train_strings": train.count, "test_strings": test.count, "beam_width": task.beamWidth,
            "train_strings_per_second": rounded(result.examplesPerSecond, 10), "wall_seconds": rounded(result.wallSeconds, 100),
        ]
        summary["train_loss"] = round4(result.trainLoss)
        for key in ["test_loss", "greedy_sequence_accuracy", "greedy_cer", "beam_sequence_accuracy", "beam_cer"] {
            summary[key] = round4(m[key])
        }
        summary["checkpoint"] = result.checkpointPath
        lines.append(String(format: "trained %d steps (%d epochs), %.0f strings/s, %.1f s", result.steps, result.epochs,
                            result.examplesPerSecond, result.wallSeconds))
        if let loss = m["test_loss"] {
            lines.append(String(format: "test: greedy sequence accuracy %.4f, CER %.4f; beam (width %d) sequence accuracy %.4f, CER %.4f; loss %.4f",
                                m["greedy_sequence_accuracy"] ?? .nan, m["greedy_cer"] ?? .nan, task.beamWidth,
                                m["beam_sequence_accuracy"] ?? .nan, m["beam_cer"] ?? .nan, loss))
        }
        if let path = result.checkpointPath { lines.append("checkpoint: \(path)") }
        return TrainingReport(result: result, summary: summary, lines: lines)
    }
}
