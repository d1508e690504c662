import Foundation
import TandemData
import TandemNN
import TandemOptim
import TandemParallel
import TandemDistributed

/// Settings of a classification training run.
public struct TrainConfig: Sendable {
    public var epochs = 1
    /// Stop after this many optimizer steps in total (nil: run all epochs).
    public var maxSteps: Int? = nil
    /// Folder for checkpoints, `metrics.jsonl` and `metrics.svg` (nil: write nothing).
    public var outDir: String? = nil
    /// Continue from the newest checkpoint in `outDir` if there is one (`Checkpoint.resume`).
    public var resume = false
    /// With `resume`: continue the run (`.full`) or start a new one from its weights.
    public var resumeMode = Checkpoint.ResumeMode.full
    /// Complete checkpoints kept in `outDir` (the newest ones).
    public var keepCheckpoints = Checkpoint.defaultKeep
    /// Write TensorBoard event files here (rank 0): the step records' scalars every `logEvery`
    /// steps, test accuracy and loss per evaluation, and histograms of every parameter and its
    /// gradient every `histogramEvery` steps.
    public var tensorboardDir: String? = nil
    public var histogramEvery = 100
    /// Show progress (rank 0 only in distributed runs).
    public var showProgress = true
    /// Write a metrics line every this many steps.
    public var logEvery = 10
    /// The process group of a distributed run: only rank 0 logs, shows progress and writes
    /// checkpoints; evaluation counts and throughput are summed over ranks.
    public var processGroup: (any ProcessGroup)? = nil
    /// Called after every optimizer step with the global step number (hooks, fault injection).
    public var afterStep: (@Sendable (Int) -> Void)? = nil
    /// Mixed precision: `.bfloat16` or `.float16` runs the forward pass (training and
    /// evaluation) under `autocast(dtype:)`; nil trains in float32. float16 also scales the
    /// loss with a `GradScaler` (all-reduced over `processGroup`), whose state goes into the
    /// checkpoint; bfloat16 needs no scaler, as in PyTorch.
    public var amp: DType? = nil
    public init() {}

    var isLeader: Bool { (processGroup?.rank ?? 0) == 0 }
}

/// What a run achieved.
public struct TrainResult: Sendable {
    public var epochs: Int
    public var steps: Int
    public var testAccuracy: Double?
    public var testLoss: Double?
    /// Mean training loss over the steps of the last epoch run.
    public var trainLoss: Double?
    public var trainImagesPerSecond: Double
    public var wallSeconds: Double
    public var checkpointPath: String?
    /// Steps the `GradScaler` skipped because of inf/NaN gradients (float16 AMP only).
    public var skippedSteps = 0
}

/// A plain supervised classification loop: cross-entropy loss, an optimizer step per batch,
/// the schedule stepped once per epoch, evaluation and a checkpoint after each epoch.
public final class Trainer<Train: Dataset, Test: Dataset> {
    public let model: any Module
    public let optimizer: any StatefulOptimizer
    public let schedule: (any LRSchedule)?
    public let trainLoader: DataLoader<Train>
    public let testLoader: DataLoader<Test>?
    public let config: TrainConfig
    /// The loss scaler of `amp: .float16` runs; nil otherwise.
    public let scaler: GradScaler?

    /// Traps if `config.amp` is not nil, `.bfloat16` or `.float16` (a programmer error).
    public init(model: any Module, optimizer: any StatefulOptimizer, schedule: (any LRSchedule)?,
                trainLoader: DataLoader<Train>, testLoader: DataLoader<Test>?, config: TrainConfig) {
        precondition(config.amp.map(\.isLowPrecision) ?? true, "TrainConfig.amp must be .bfloat16, .float16 or nil")
        if config.amp == .float16 {
            // The arguments are valid, so the initialisers cannot throw.
            if let group = config.processGroup {
                scaler = try! GradScaler(processGroup: group)
            } else {
                scaler = try! GradScaler()
            }
        } else {
            scaler = nil
        }
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        self.trainLoader = trainLoader
        self.testLoader = testLoader
        self.config = config
    }

    /// Throws `TrainError.diverged` naming the first parameter or buffer that holds an inf or NaN.
    private func checkFinite(step: Int) throws {
        if let bad = FiniteCheck.firstNonFinite(model.stateDict()) {
            throw TrainError.diverged(step: step, tensor: bad.name, value: bad.value)
        }
    }

    /// Trains, evaluates and checkpoints; resumes first when asked and a checkpoint exists.
    public func fit() throws -> TrainResult {
        var position = Checkpoint.Position(epoch: 0, step: 0)
        var stepsIntoEpoch = 0
        // A run that continues keeps its older checkpoints; a new one (also from weights only)
        // replaces whatever an earlier run left in `outDir` at its first save.
        var continuing = false
        if config.resume, let out = config.outDir,
           let resumed = try Checkpoint.resume(in: out, mode: config.resumeMode, model: model, optimizer: optimizer,
                                               schedule: schedule, scaler: scaler) {
            position = resumed
            stepsIntoEpoch = position.step - position.epoch * trainLoader.count
            continuing = config.resumeMode == .full
        }
        var log: MetricsLog?
        if let out = config.outDir, config.isLeader {
            try OutputFolder.prepare(out)
            log = try MetricsLog(path: out + "/metrics.jsonl", append: continuing)
        }
        let board = try config.tensorboardDir.flatMap { config.isLeader ? try SummaryWriter(directory: $0) : nil }
        let start = Date()
        var trainedImages = 0
        var trainingSeconds = 0.0
        var result = TrainResult(epochs: position.epoch, steps: position.step, trainImagesPerSecond: 0, wallSeconds: 0)
        var epoch = position.epoch
        var step = position.step
        var skippedSteps = 0
        let stepLimit = config.maxSteps ?? Int.max
        while epoch < config.epochs && step < stepLimit {
            model.train()
            trainLoader.setEpoch(epoch)
            // The run's steps: every epoch's batches, or --max-steps when it ends the run sooner.
            let runSteps = Swift.min(stepLimit, config.epochs * trainLoader.count)
            let progress = ProgressBar(total: trainLoader.count, label: "epoch \(epoch + 1)/\(config.epochs)",
                                       enabled: config.showProgress && config.isLeader,
                                       run: (done: step - stepsIntoEpoch, total: runSteps), initial: stepsIntoEpoch)
            let iterator = trainLoader.makeIterator()
            var batchIndex = 0
            var runningLoss = 0.0, runningCount = 0
            let epochStart = Date()
            var epochImages = 0
            while step < stepLimit, let (x, y) = try iterator.next() {
                defer { batchIndex += 1 }
                if batchIndex < stepsIntoEpoch { continue }  // resuming mid-epoch: these batches were trained
                let stepStart = Date()
                optimizer.zeroGrad()
                let loss = try forward { try Tensor.crossEntropy(model(x), target: y) }
                if let scaler {
                    try scaler.scale(loss).backward()
                } else {
                    try loss.backward()
                }
                if let ddp = model as? DistributedDataParallel { try ddp.synchronize() }
                if let scaler {
                    if try !scaler.step(optimizer) { skippedSteps += 1 }
                    scaler.update()
                } else {
                    try optimizer.step()
                }
                step += 1
                config.afterStep?(step)
                let lossValue = try loss.item()
                // With a scaler, a non-finite loss only skips the step (its gradients are not finite).
                guard lossValue.isFinite || scaler != nil else {
                    throw TrainError.diverged(step: step, tensor: "the loss", value: "\(lossValue)")
                }
                // A finite loss can hide parameters or buffers (a running variance) gone to inf.
                if step % config.logEvery == 0 { try checkFinite(step: step) }
                if let board, config.histogramEvery > 0, step % config.histogramEvery == 0 {
                    let named = (model as? DistributedDataParallel)?.module.namedParameters() ?? model.namedParameters()
                    for (name, parameter) in named {
                        board.addHistogram("weights/" + name, parameter.value.toDoubleArray(), step: step)
                        if let grad = parameter.grad { board.addHistogram("gradients/" + name, grad.toDoubleArray(), step: step) }
                    }
                }
                let n = x.shape[0]
                trainedImages += n
                epochImages += n
                let stepSeconds = Date().timeIntervalSince(stepStart)
                trainingSeconds += stepSeconds
                runningLoss += lossValue * Double(n)
                runningCount += n
                let rate = Double(epochImages) / Date().timeIntervalSince(epochStart)
                progress.update(batchIndex + 1, String(format: "loss %.4f  %.0f img/s", lossValue, rate))
                if step % config.logEvery == 0 {
                    var record: [String: Any] = ["kind": "step", "epoch": epoch, "step": step, "loss": lossValue,
                                                 "lr": optimizer.learningRate, "images_per_second": rate,
                                                 "step_seconds": stepSeconds, "time": Date().timeIntervalSince1970]
                    if let ddp = model as? DistributedDataParallel { record["communication_seconds"] = ddp.lastCommunicationSeconds }
                    if let scaler { record["loss_scale"] = scaler.scale; record["skipped_steps"] = skippedSteps }
                    try log?.write(record)
                    if let board {
                        for key in ["loss", "lr", "images_per_second", "communication_seconds", "loss_scale"] {
                            if let value = record[key] as? Double { board.addScalar("train/" + key, value, step: step) }
                        }
                    }
                }
            }
            progress.finish()
            stepsIntoEpoch = 0
            let finishedEpoch = batchIndex >= trainLoader.count
            if finishedEpoch {
                epoch += 1
                schedule?.step()
            }
            var record: [String: Any] = ["kind": "epoch", "epoch": epoch, "step": step,
                                         "train_loss": runningCount > 0 ? runningLoss / Double(runningCount) : Double.nan]
            if runningCount > 0 { result.trainLoss = runningLoss / Double(runningCount) }
            if testLoader != nil {
                let (accuracy, testLoss) = try evaluate()
                result.testAccuracy = accuracy
                result.testLoss = testLoss
                record["test_accuracy"] = accuracy
                record["test_loss"] = testLoss
                board?.addScalar("test/accuracy", accuracy, step: step)
                board?.addScalar("test/loss", testLoss, step: step)
            }
            try log?.write(record)
            try checkFinite(step: step)  // never overwrite a good checkpoint with a diverged model
            if let out = config.outDir, config.isLeader {
                try Checkpoint.save(model: model, optimizer: optimizer, schedule: schedule, scaler: scaler,
                                    position: .init(epoch: epoch, step: step), to: out, keep: config.keepCheckpoints,
                                    discardOthers: !continuing)
                continuing = true
                result.checkpointPath = out + "/" + Checkpoint.modelFile
                try writePlot(metricsPath: out + "/metrics.jsonl", to: out + "/metrics.svg")
            }
        }
        result.epochs = epoch
        result.steps = step
        result.skippedSteps = skippedSteps
        result.wallSeconds = Date().timeIntervalSince(start)
        let rate = trainingSeconds > 0 ? Double(trainedImages) / trainingSeconds : 0
        // Global throughput: every rank trains its share at the same time.
        result.trainImagesPerSecond = try DistributedMetrics.sum([rate], group: config.processGroup)[0]
        return result
    }

    /// Accuracy and mean cross-entropy on the test loader, in evaluation mode without grad,
    /// per target element: per image for classifiers (`[N, C]`, targets `[N]`), per position
    /// for sequence logits `[N, C, L]` with targets `[N, L]` (e.g. `ClassFirstLogits`).
    public func evaluate() throws -> (accuracy: Double, loss: Double) {
        guard let testLoader else { return (.nan, .nan) }
        model.eval()
        defer { model.train() }
        var correct = 0, total = 0, batches = 0
        var lossSum = 0.0
        // Shown only when evaluation takes more than 1.5 s.
        let progress = ProgressBar(total: testLoader.count, label: "eval", enabled: config.showProgress && config.isLeader,
                                   delay: 1.5)
        try Tensor.withNoGrad {
            try testLoader.forEach { x, y in
                let logits = try forward { try model(x) }
                lossSum += try Tensor.crossEntropy(logits, target: y, reduction: .sum).item()
                correct += try logits.argmax(axis: 1).eq(y).toIntArray().reduce(0, +)
                total += y.count
                batches += 1
                progress.update(batches)
            }
        }
        let sums = try DistributedMetrics.sum([Double(correct), Double(total), lossSum], group: config.processGroup)
        return (sums[0] / Swift.max(sums[1], 1), sums[2] / Swift.max(sums[1], 1))
    }

    /// Runs `body` under `autocast(dtype: config.amp)` when mixed precision is on.
    private func forward<R>(_ body: () throws -> R) throws -> R {
        guard let dtype = config.amp else { return try body() }
        return try autocast(dtype: dtype, body)
    }

    private func writePlot(metricsPath: String, to path: String) throws {
        let records = try MetricsLog.read(path: metricsPath)
        try Plot.writeSVG(Plot.runPanels([(name: "run", records: records)]), xLabel: "step", to: path)
    }
}
