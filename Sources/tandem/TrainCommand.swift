import ArgumentParser
import Foundation
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemTrain
import TandemDistributed
import TandemParallel

/// `tandem train`: trains one of the zoo's classifiers, like the seed's PyTorch scripts.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a model (one process, or DDP with --nproc-per-node or under tandem run or mpirun).")

    @Option(help: "Model: \((ModelZoo.names + ModelZoo.languageModelNames).joined(separator: ", ")).") var model: String = "convnet"
    @Option(help: "Dataset: mnist, cifar10, text (default: the model's).") var dataset: String?
    @Option(help: "Dataset folder (default Data/mnist or Data/cifar-10-batches-bin).") var dataDir: String?
    @Option(help: "Text corpus for --dataset text: a UTF-8 file, or a folder of fortune files (default /usr/share/games/fortunes).") var dataFile: String?
    @Option(parsing: .unconditional, help: "Tokens per training window for --dataset text.") var context: Int = 128
    @Option(parsing: .unconditional, help: "Epochs.") var epochs: Int = 1
    @Option(parsing: .unconditional, help: "Stop after this many steps in total.") var maxSteps: Int?
    @Option(parsing: .unconditional, help: "Batch size per process: N processes train on a global batch of N × this, drawn from one permutation for any N.") var batchSize: Int = 64
    @Option(parsing: .unconditional, help: "Learning rate (default 0.01; 1e-3 for language models).") var lr: Double?
    @Option(parsing: .unconditional, help: "SGD momentum.") var momentum: Double = 0.9
    @Option(parsing: .unconditional, help: "Weight decay.") var weightDecay: Double = 0
    @Option(help: "LR schedule per epoch: none, step (×0.1 each epoch), cosine.") var scheduler: String = "none"
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
    @Option(help: "Collective backend for DDP: gloo, or mpi for jobs started by mpirun.") var backend: String = "gloo"
    @Flag(help: "Convert BatchNorm layers to SyncBatchNorm under DDP.") var syncBn = false
    @Option(parsing: .unconditional, help: "Seconds any collective may wait under DDP (default: TANDEM_TIMEOUT, else 1800, as PyTorch).")
    var timeout: Double?
    @Option(help: "Mixed precision: bf16 (autocast to bfloat16) or fp16 (autocast to float16 with a GradScaler).")
    var amp: String?
    @Option(parsing: .unconditional, help: "ctc-digits: training strings of 3–6 MNIST digits.") var trainStrings: Int = 20_000
    @Option(parsing: .unconditional, help: "ctc-digits: test strings.") var testStrings: Int = 2_000

    /// The autocast dtype of `--amp`.
    var ampDType: DType? { amp.map { $0 == "fp16" ? .float16 : .bfloat16 } }

    func validate() throws {
        if model == "ctc-digits" { return try validateCTC() }   // TrainCTC.swift
        guard nprocPerNode >= 1 else { throw ValidationError("--nproc-per-node must be at least 1") }
        guard let chosen = Backend(rawValue: backend) else { throw ValidationError("unknown --backend '\(backend)'; choose gloo or mpi") }
        if chosen == .mpi && nprocPerNode > 1 {
            throw ValidationError("--backend mpi takes its processes from mpirun: run `mpirun -np \(nprocPerNode) tandem train --backend mpi ...` without --nproc-per-node")
        }
        guard ModelZoo.names.contains(model) || ModelZoo.languageModelNames.contains(model) else {
            throw ValidationError("unknown --model '\(model)'; choose one of \((ModelZoo.names + ModelZoo.languageModelNames).joined(separator: ", "))")
        }
        if let dataset, !["mnist", "cifar10", "kan-toy", "text"].contains(dataset) {
            throw ValidationError("unknown --dataset '\(dataset)'; choose mnist, cifar10, text (with --model mamba2-lm) or kan-toy (with --model kan)")
        }
        try validateLanguageModelOptions()
        if dataset == "kan-toy" && model != "kan" { throw ValidationError("--dataset kan-toy goes with --model kan") }
        guard epochs > 0 else { throw ValidationError("--epochs must be positive") }
        if let maxSteps, maxSteps <= 0 { throw ValidationError("--max-steps must be positive") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        if let lr, !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be a positive number") }
        guard momentum >= 0, weightDecay >= 0 else { throw ValidationError("--momentum and --weight-decay must be ≥ 0") }
        guard ["none", "step", "cosine"].contains(scheduler) else {
            throw ValidationError("unknown --scheduler '\(scheduler)'; choose none, step or cosine")
        }
        guard numWorkers >= 0 else { throw ValidationError("--num-workers must be ≥ 0") }
        guard logEvery >= 1 else { throw ValidationError("--log-every must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let timeout, !(timeout > 0 && timeout < 1e9) { throw ValidationError("--timeout must be a positive number of seconds") }
        if let amp, !["bf16", "fp16"].contains(amp) { throw ValidationError("unknown --amp '\(amp)'; choose bf16 or fp16") }
        if (resume || resumeWeightsOnly) && out == nil {
            throw ValidationError("--resume needs --out, the folder that holds the checkpoint")
        }
        guard keepCheckpoints >= 1 else { throw ValidationError("--keep-checkpoints must be at least 1") }
    }

    func run() throws {
        if model == "ctc-digits" { return try runCTC() }   // TrainCTC.swift
        if ModelZoo.languageModelNames.contains(model) { return try trainLanguageModel() }
        if dataset == "kan-toy" {
            // The KAN paper's function-fitting demo (grid extension 5 → 10 → 20).
            var arguments = ["--seed", "\(seed)"]
            if let maxSteps { arguments += ["--steps", "\(maxSteps)"] }
            if let out {
                try OutputFolder.prepare(out)
                arguments += ["--plot", out + "/kan_toy_edges.svg"]
            }
            return try KanToyCommand.parse(arguments).run()
        }
        let group = try startDistributed()
        // Closing the group lets MPI finalize (mpirun treats a rank that exits without it as failed).
        defer { group?.destroy() }
        let rank = group?.rank ?? 0, worldSize = group?.worldSize ?? 1
        let datasetName = dataset ?? ModelZoo.defaultDataset(for: model) ?? "mnist"
        let generator = Generator(seed: seed)
        guard var net = ModelZoo.make(model, generator: generator) else { throw ValidationError("unknown model \(model)") }
        if let group {
            if syncBn { net = try convertSyncBatchNorm(net, processGroup: group) }
            net = try DistributedDataParallel(net, processGroup: group)
        }
        let optimizer = try SGD(net.parameters(), lr: lr ?? 0.01, momentum: momentum, weightDecay: weightDecay)
        let schedule = try makeSchedule(optimizer)
        var config = trainConfig(group: group)
        config.amp = ampDType
        // One path for any world size: the same permutation gives the same global batches (DataSharding).
        func samplers(trainCount: Int, testCount: Int) throws -> (any Sampler, any Sampler) {
            (try DataSharding.trainSampler(count: trainCount, rank: rank, worldSize: worldSize, seed: seed),
             try DataSharding.evalSampler(count: testCount, rank: rank, worldSize: worldSize))
        }
        let result: TrainResult
        switch datasetName {
        case "cifar10":
            let folder = dataDir ?? "Data/cifar-10-batches-bin"
            var train = try CIFAR10(folder: folder, train: true)
            train.seed = seed
            let test = try CIFAR10(folder: folder, train: false)
            let (trainSampler, testSampler) = try samplers(trainCount: train.count, testCount: test.count)
            result = try Trainer(model: net, optimizer: optimizer, schedule: schedule,
                                 trainLoader: DataLoader(train, batchSize: batchSize, sampler: trainSampler,
                                                         numWorkers: numWorkers, seed: seed),
                                 testLoader: DataLoader(test, batchSize: 1000, sampler: testSampler, numWorkers: numWorkers), config: config).fit()
        default:
            let folder = dataDir ?? "Data/mnist"
            let train = try MNIST(folder: folder, train: true), test = try MNIST(folder: folder, train: false)
            let (trainSampler, testSampler) = try samplers(trainCount: train.count, testCount: test.count)
            result = try Trainer(model: net, optimizer: optimizer, schedule: schedule,
                                 trainLoader: DataLoader(train, batchSize: batchSize, sampler: trainSampler,
                                                         numWorkers: numWorkers, seed: seed),
                                 testLoader: DataLoader(test, batchSize: 1000, sampler: testSampler, numWorkers: numWorkers), config: config).fit()
        }
        guard rank == 0 else { return }
        if json {
            var object: [String: Any] = [
                "model": model, "dataset": datasetName, "world_size": worldSize, "epochs": result.epochs, "steps": result.steps,
                "train_images_per_second": (result.trainImagesPerSecond * 10).rounded() / 10,
                "wall_seconds": (result.wallSeconds * 100).rounded() / 100, "threads": Tandem.numThreads,
                "batch_size": batchSize, "amp": amp ?? "none",
            ]
            if ampDType == .float16 { object["skipped_steps"] = result.skippedSteps }
            object["test_accuracy"] = result.testAccuracy
            object["checkpoint"] = result.checkpointPath
            try printJSON(object)
        } else {
            print(String(format: "trained %d epochs, %d steps: test accuracy %.4f, %.0f train images/s, %.1f s",
                         result.epochs, result.steps, result.testAccuracy ?? .nan, result.trainImagesPerSecond, result.wallSeconds))
            if let path = result.checkpointPath { print("checkpoint: \(path)") }
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
        let group = try initProcessGroup(backend: Backend(rawValue: backend) ?? .gloo, initMethod: "env://",
                                         timeout: timeout.map { .milliseconds(Int64(($0 * 1000).rounded())) })
        try checkSameFlags(group)
        return group
    }

    /// The flags every rank of a DDP job must share, as `--name value` words.
    var sharedFlags: [String] {
        ["--model \(model)", "--dataset \(dataset ?? "default")", "--batch-size \(batchSize)", "--epochs \(epochs)",
         "--max-steps \(maxSteps.map(String.init) ?? "none")", "--lr \(lr.map { "\($0)" } ?? "default")",
         "--momentum \(momentum)", "--weight-decay \(weightDecay)", "--scheduler \(scheduler)", "--amp \(amp ?? "none")",
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

    /// The per-epoch LR schedule of `--scheduler` (nil for none).
    func makeSchedule(_ optimizer: any Optimizer) throws -> (any LRSchedule)? {
        switch scheduler {
        case "step": try StepLR(optimizer, stepSize: 1, gamma: 0.1)
        case "cosine": try CosineAnnealingLR(optimizer, tMax: epochs)
        default: nil
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
    static func launchedWorldSize(_ environment: [String: String], backend: String) -> Int? {
        var names = ["WORLD_SIZE"]
        if backend == Backend.mpi.rawValue { names += ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] }
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

/// `tandem eval`: evaluates saved weights (Tandem's or PyTorch's safetensors state dict).
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Evaluate saved weights on a test set.")

    @Option(help: "Model: \(ModelZoo.names.joined(separator: ", ")).") var model: String = "convnet"
    @Option(help: "A safetensors state dict with PyTorch names.") var weights: String
    @Option(help: "Dataset: mnist, cifar10 (default: the model's).") var dataset: String?
    @Option(help: "Dataset folder.") var dataDir: String?
    @Option(help: "Write int64 `predictions` (one per test image) to this safetensors file.") var predictions: String?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard ModelZoo.names.contains(model) else {
            throw ValidationError("unknown --model '\(model)'; choose one of \(ModelZoo.names.joined(separator: ", "))")
        }
    }

    func run() throws {
        guard let net = ModelZoo.make(model, generator: Generator(seed: 0)) else { return }
        try Checkpoint.loadWeights(path: weights, into: net)
        if let bad = FiniteCheck.firstNonFinite(net.stateDict()) {
            FileHandle.standardError.write(Data("warning: '\(weights)' holds \(bad.name) \(bad.value); the run that wrote it diverged, so these results mean little\n".utf8))
        }
        net.eval()
        let datasetName = dataset ?? ModelZoo.defaultDataset(for: model) ?? "mnist"
        var predicted: [Int] = []
        var correct = 0, total = 0
        func run<D: Dataset>(_ data: D) throws {
            try Tensor.withNoGrad {
                try DataLoader(data, batchSize: 1000).forEach { x, y in
                    let p = try net(x).argmax(axis: 1)
                    predicted += p.toIntArray()
                    correct += try p.eq(y).toIntArray().reduce(0, +)
                    total += y.shape[0]
                }
            }
        }
        if datasetName == "cifar10" {
            try run(CIFAR10(folder: dataDir ?? "Data/cifar-10-batches-bin", train: false))
        } else {
            try run(MNIST(folder: dataDir ?? "Data/mnist", train: false))
        }
        if let predictions {
            try SafeTensors.save([("predictions", Tensor(int64: predicted))], to: predictions)
        }
        let accuracy = Double(correct) / Double(Swift.max(total, 1))
        if json {
            print("{\"model\":\"\(model)\",\"dataset\":\"\(datasetName)\",\"images\":\(total),\"test_accuracy\":\(accuracy)}")
        } else {
            print(String(format: "test accuracy %.4f on %d images", accuracy, total))
        }
    }
}

/// Fault injection for the launcher's failure tests: with `TANDEM_FAULT_KILL_STEP=S` and
/// `TANDEM_FAULT_KILL_RANK=R`, rank R kills itself with SIGKILL right after step S, on the
/// first attempt only (`TANDEM_RESTART_COUNT` unset or 0), so a restarted job can finish.
enum FaultInjection {
    static func fromEnvironment(rank: Int) -> (@Sendable (Int) -> Void)? {
        let env = ProcessInfo.processInfo.environment
        guard let step = env["TANDEM_FAULT_KILL_STEP"].flatMap(Int.init),
              (env["TANDEM_FAULT_KILL_RANK"].flatMap(Int.init) ?? 0) == rank,
              (env["TANDEM_RESTART_COUNT"].flatMap(Int.init) ?? 0) == 0 else { return nil }
        return { current in if current == step { kill(getpid(), SIGKILL) } }
    }
}
