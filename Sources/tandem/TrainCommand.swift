import ArgumentParser
import Foundation
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemTrain
import TandemDistributed
import TandemParallel

/// The models `tandem train` knows (ModelZoo's classifiers and language models, and the CTC recogniser).
enum ModelChoice: String, CaseIterable, ExpressibleByArgument {
    case convnet, cifarCNN = "cifar-cnn", kan, mambaoutMini = "mambaout-mini", mamba2LM = "mamba2-lm", gptLM = "gpt-lm", llamaLM = "llama-lm", ctcDigits = "ctc-digits"
}

/// The datasets of `--dataset`.
enum DatasetChoice: String, CaseIterable, ExpressibleByArgument {
    case mnist, cifar10, text, kanToy = "kan-toy", mnistStrings = "mnist-strings"
}

/// `--amp`: bf16 (autocast to bfloat16) or fp16 (float16 with a GradScaler).
enum AmpChoice: String, CaseIterable, ExpressibleByArgument {
    case bf16, fp16
    var dtype: DType { self == .fp16 ? .float16 : .bfloat16 }
}

extension LRScheduler: ExpressibleByArgument {}
extension Backend: ExpressibleByArgument {}

/// `tandem train`: parses the flags into `TrainingOptions` and a `TrainConfig` and runs the
/// model's recipe (`TrainingRecipes`), on one process or under DDP.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a model (one process, or DDP with --nproc-per-node or under tandem run or mpirun).")

    @Option(help: "Model.") var model: ModelChoice = .convnet
    @Option(help: "Dataset (default: the model's).") var dataset: DatasetChoice?
    @Option(help: "Dataset folder (default Data/mnist or Data/cifar-10-batches-bin).") var dataDir: String?
    @Option(help: "Text corpus for --dataset text: a UTF-8 file, or a folder of fortune files (default /usr/share/games/fortunes).") var dataFile: String?
    @Option(parsing: .unconditional, help: "Tokens per training window for --dataset text.") var context: Int = 128
    @Option(parsing: .unconditional, help: "Epochs.") var epochs: Int = 1
    @Option(parsing: .unconditional, help: "Stop after this many steps in total.") var maxSteps: Int?
    @Option(parsing: .unconditional, help: "Batch size per process: N processes train on a global batch of N × this, drawn from one permutation for any N.") var batchSize: Int = 64
    @Option(parsing: .unconditional, help: "Learning rate (default 0.01; 1e-3 for language models, 3e-3 for ctc-digits).") var lr: Double?
    @Option(parsing: .unconditional, help: "SGD momentum.") var momentum: Double = 0.9
    @Option(parsing: .unconditional, help: "Weight decay.") var weightDecay: Double = 0
    @Option(help: "LR schedule: none, step (×0.1 each epoch), cosine (default: none; cosine per step for ctc-digits).") var scheduler: LRScheduler?
    @Option(parsing: .unconditional, help: "Background data workers.") var numWorkers: Int = 0
    @Option(parsing: .unconditional, help: "Intra-op threads (default: TANDEM_NUM_THREADS or all cores).") var threads: Int?
    @Option(parsing: .unconditional, help: "Random seed (initialisation and shuffling).") var seed: UInt64 = 0
    @Option(help: "Output folder: checkpoints, metrics.jsonl, metrics.svg.") var out: String?
    @Option(parsing: .unconditional, help: "Write a step record to metrics.jsonl every this many steps.") var logEvery: Int = 10
    @Flag(help: "Continue from the newest complete checkpoint in --out (`--resume weights-only`: start a new run from its weights).")
    var resume = false
    @Flag(help: .hidden) var resumeWeightsOnly = false
    @Option(parsing: .unconditional, help: "Complete checkpoints to keep in --out (the newest ones).") var keepCheckpoints: Int = Checkpoint.defaultKeep
    @Flag(help: "Print one final JSON object.") var json = false
    @Option(help: "Write TensorBoard event files to this folder (rank 0): scalars every --log-every steps, weight and gradient histograms every 100.")
    var tensorboard: String?
    @Option(parsing: .unconditional, help: "Train with DDP on this many local processes (started through `tandem run`).") var nprocPerNode: Int = 1
    @Option(help: "Collective backend for DDP: gloo, or mpi for jobs started by mpirun.") var backend: Backend = .gloo
    @Flag(help: "Convert BatchNorm layers to SyncBatchNorm under DDP.") var syncBn = false
    @Option(parsing: .unconditional, help: "Seconds any collective may wait under DDP (default: TANDEM_TIMEOUT, else 1800, as PyTorch).")
    var timeout: Double?
    @Option(help: "Mixed precision: bf16 (autocast to bfloat16) or fp16 (autocast to float16 with a GradScaler).")
    var amp: AmpChoice?
    @Option(parsing: .unconditional, help: "ctc-digits: training strings of 3–6 MNIST digits.") var trainStrings: Int = 20_000
    @Option(parsing: .unconditional, help: "ctc-digits: test strings.") var testStrings: Int = 2_000
    @Option(parsing: .unconditional, help: "Micro-batches per optimizer step (gradient accumulation; no communication between them under DDP).")
    var gradAccum: Int = 1
    @Flag(help: "gpt-lm, llama-lm: recompute each block in the backward pass instead of keeping its activations.")
    var checkpointActivations = false
    @Option(parsing: .unconditional, help: "gpt-lm, llama-lm: linear warm-up steps before the cosine schedule (default: 1/20 of the steps, at most 100).")
    var warmupSteps: Int?
    @Option(parsing: .unconditional, help: "Clip the global gradient norm (default: 1 for gpt-lm and llama-lm, 5 for ctc-digits, none otherwise).")
    var clipGrad: Double?
    @Option(parsing: .unconditional, help: "Language models: layers (default gpt-lm/llama-lm 6, mamba2-lm 4).") var layers: Int?
    @Option(parsing: .unconditional, help: "Language models: residual width (default gpt-lm/llama-lm 384, mamba2-lm 128).") var width: Int?
    @Option(parsing: .unconditional, help: "gpt-lm, llama-lm: attention heads (default 6; llama-lm uses a third as key/value heads).") var heads: Int?

    /// What to train, from the flags.
    var options: TrainingOptions {
        var o = TrainingOptions()
        o.model = model.rawValue
        o.dataset = dataset?.rawValue
        (o.dataDir, o.dataFile, o.context, o.epochs, o.maxSteps, o.batchSize) = (dataDir, dataFile, context, epochs, maxSteps, batchSize)
        (o.lr, o.momentum, o.weightDecay, o.scheduler, o.numWorkers, o.seed) = (lr, momentum, weightDecay, scheduler, numWorkers, seed)
        (o.syncBatchNorm, o.amp, o.trainStrings, o.testStrings) = (syncBn, amp?.dtype, trainStrings, testStrings)
        (o.gradAccum, o.checkpointActivations, o.warmupSteps, o.clipGrad) = (gradAccum, checkpointActivations, warmupSteps, clipGrad)
        o.size = ModelZoo.LanguageModelSize(layers: layers, width: width, heads: heads)
        return o
    }

    func validate() throws {
        guard nprocPerNode >= 1 else { throw ValidationError("--nproc-per-node must be at least 1") }
        if backend == .mpi && nprocPerNode > 1 {
            throw ValidationError("--backend mpi takes its processes from mpirun: run `mpirun -np \(nprocPerNode) tandem train --backend mpi ...` without --nproc-per-node")
        }
        do { try options.validate() } catch { throw ValidationError("\(error)") }
        guard logEvery >= 1 else { throw ValidationError("--log-every must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let timeout, !(timeout > 0 && timeout < 1e9) { throw ValidationError("--timeout must be a positive number of seconds") }
        if (resume || resumeWeightsOnly) && out == nil {
            throw ValidationError("--resume needs --out, the folder that holds the checkpoint")
        }
        if (resume || resumeWeightsOnly) && model == .ctcDigits { throw ValidationError("--resume is not supported for ctc-digits; start a new run") }
        guard keepCheckpoints >= 1 else { throw ValidationError("--keep-checkpoints must be at least 1") }
    }

    func run() throws {
        if options.resolvedDataset == "kan-toy" {
            // The KAN paper's function-fitting demo (grid extension 5 → 10 → 20).
            var fitting = KANFunctionFitting()
            fitting.seed = seed
            if let maxSteps { fitting.steps = maxSteps }
            if let out {
                try OutputFolder.prepare(out)
                fitting.plot = out + "/kan_toy_edges.svg"
            }
            _ = try fitting.run()
            return
        }
        let group = try startDistributed()
        // Closing the group lets MPI finalize (mpirun treats a rank that exits without it as failed).
        defer { group?.destroy() }
        let report = try TrainingRecipes.run(options, config: trainConfig(group: group))
        guard (group?.rank ?? 0) == 0 else { return }
        if json {
            try JSONValues.printLine(report.summary)
        } else {
            for line in report.lines { print(line) }
        }
    }
}

extension TrainCommand {
    /// Relaunches under `tandem run` for `--nproc-per-node`, applies `--threads`, and joins the
    /// process group that the launcher (or mpirun) set up; nil for a single process.
    func startDistributed() throws -> (any ProcessGroup)? {
        let environment = ProcessInfo.processInfo.environment
        if nprocPerNode > 1 && environment["WORLD_SIZE"] == nil { try relaunchUnderTandemRun() }
        if let threads { Tandem.setNumThreads(threads) }
        guard let size = Self.launchedWorldSize(environment, backend: backend), size > 1 else { return nil }
        let group = try initProcessGroup(backend: backend, initMethod: "env://",
                                         timeout: timeout.map { .milliseconds(Int64(($0 * 1000).rounded())) })
        try checkSameFlags(group)
        return group
    }

    /// The flags every rank of a DDP job must share, as `--name value` words.
    var sharedFlags: [String] {
        ["--model \(model.rawValue)", "--dataset \(dataset?.rawValue ?? "default")", "--batch-size \(batchSize)", "--epochs \(epochs)",
         "--max-steps \(maxSteps.map(String.init) ?? "none")", "--lr \(lr.map { "\($0)" } ?? "default")",
         "--momentum \(momentum)", "--weight-decay \(weightDecay)", "--scheduler \(scheduler?.rawValue ?? "default")",
         "--amp \(amp?.rawValue ?? "none")",
         "--sync-bn \(syncBn)", "--resume \(resume || resumeWeightsOnly)"]
    }

    /// Ranks started with different training flags (a different --batch-size, say) would run
    /// different numbers of steps and fail only at the end of an epoch, blaming a dead peer:
    /// compare them once, right after the group forms, and name the flag and the ranks.
    func checkSameFlags(_ group: any ProcessGroup) throws {
        let width = 1024
        var bytes = Array(sharedFlags.joined(separator: "\u{1}").utf8.prefix(width).map(Int64.init))
        bytes += [Int64](repeating: 0, count: width - bytes.count)
        let all = try group.allGather(Tensor(int64: bytes.map(Int.init)))
        let flags = all.map { tensor in
            String(decoding: tensor.toIntArray().prefix { $0 != 0 }.map(UInt8.init), as: UTF8.self).split(separator: "\u{1}").map(String.init)
        }
        for (rank, theirs) in flags.enumerated() where theirs != flags[0] {
            let differing = zip(flags[0], theirs).filter { $0 != $1 }
            let described = differing.map { "rank 0 has \($0.0), rank \(rank) has \($0.1)" }.joined(separator: "; ")
            throw ValidationError("the ranks were started with different training flags (\(described)); start every rank "
                + "with the same flags (tandem train --nproc-per-node or tandem run -- tandem train ... does this)")
        }
    }

    /// The Trainer settings that come from the common flags.
    func trainConfig(group: (any ProcessGroup)?) -> TrainConfig {
        var config = TrainConfig()
        config.epochs = epochs
        config.maxSteps = maxSteps
        config.outDir = out
        config.logEvery = logEvery
        config.resume = resume || resumeWeightsOnly
        config.resumeMode = resumeWeightsOnly ? .weightsOnly : .full
        config.keepCheckpoints = keepCheckpoints
        config.tensorboardDir = tensorboard
        config.showProgress = !json
        config.processGroup = group
        config.afterStep = FaultInjection.fromEnvironment(rank: group?.rank ?? 0)
        return config
    }

    /// The world size the launcher gave this process: WORLD_SIZE from `tandem run` (or torchrun),
    /// and for `--backend mpi` also mpirun's OMPI_COMM_WORLD_SIZE or PMI_SIZE.
    static func launchedWorldSize(_ environment: [String: String], backend: Backend) -> Int? {
        var names = ["WORLD_SIZE"]
        if backend == .mpi { names += ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] }
        return names.lazy.compactMap { environment[$0].flatMap(Int.init) }.first
    }

    /// `tandem train --nproc-per-node N` becomes `tandem run --standalone --nproc-per-node N --
    /// tandem train ...` (this process is replaced; the launcher sets RANK, WORLD_SIZE, ...).
    func relaunchUnderTandemRun() throws -> Never {
        var rest: [String] = []
        var skip = false
        for argument in CommandLine.arguments.dropFirst() {
            if skip { skip = false; continue }
            if argument == "--nproc-per-node" { skip = true; continue }
            if argument.hasPrefix("--nproc-per-node=") { continue }
            rest.append(argument)
        }
        let executable = "/proc/self/exe"
        let arguments = ["tandem", "run", "--standalone", "--nproc-per-node", "\(nprocPerNode)", "--unprefixed-stdout-rank", "0", "--",
                         (try? FileManager.default.destinationOfSymbolicLink(atPath: executable)) ?? CommandLine.arguments[0]] + rest
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        execv(executable, &argv)
        throw ValidationError("could not start `tandem run`: \(String(cString: strerror(errno)))")
    }
}
