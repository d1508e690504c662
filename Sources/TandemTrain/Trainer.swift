import Foundation
import TandemData
import TandemNN
import TandemOptim
import TandemParallel
import TandemDistributed

/// Settings of a training run.
public struct TrainConfig: Sendable {
    /// When the learning-rate schedule steps.
    public enum ScheduleStep: Sendable { case perEpoch, perStep }
    /// When the test data is scored.
    public enum Evaluation: Sendable { case everyEpoch, atEnd }
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
    /// Clip the global gradient norm to this before each step (nil: no clipping).
    public var clipNorm: Double? = nil
    /// Micro-batches per optimizer step: their mean loss's gradients are accumulated (under DDP
    /// without communication on all but the last), so a step sees `gradientAccumulation` batches.
    public var gradientAccumulation = 1
    /// The schedule steps once per epoch (PyTorch's usual loop) or once per optimizer step.
    public var scheduleStep = ScheduleStep.perEpoch
    /// Score the test data after every epoch, or once after training.
    public var evaluation = Evaluation.everyEpoch
    /// Stored in the checkpoint's metadata (e.g. the model's name).
    public var checkpointMetadata: [String: String] = [:]
    public init() {}

    var isLeader: Bool { (processGroup?.rank ?? 0) == 0 }
}

/// What a run achieved.
public struct TrainResult: Sendable {
    public var epochs: Int
    public var steps: Int
    /// The task's test metrics of the last evaluation ("test_loss", "test_accuracy", ...).
    public var metrics: [String: Double] = [:]
    /// Test accuracy (classification).
    public var testAccuracy: Double? { metrics["test_accuracy"] }
    /// Mean test loss per target element (per string for CTC).
    public var testLoss: Double? { metrics["test_loss"] }
    /// Mean training loss over the steps of the last epoch run.
    public var trainLoss: Double?
    /// Training examples (images, strings, windows) per second, summed over ranks.
    public var examplesPerSecond: Double
    public var wallSeconds: Double
    public var checkpointPath: String?
    /// Steps the `GradScaler` skipped because of inf/NaN gradients (float16 AMP only).
    public var skippedSteps = 0
}

/// The training loop, for any `TrainingTask`: an optimizer step per batch (under autocast and
/// with a `GradScaler` for mixed precision, DDP's gradient synchronisation, optional clipping),
/// the schedule per epoch or per step, evaluation, metrics logs, TensorBoard, progress, and an
/// atomic checkpoint after each epoch (resumable).
public final class Trainer<Task: TrainingTask> {
    public let model: any Module
    public let optimizer: any StatefulOptimizer
    public let schedule: (any LRSchedule)?
    public let task: Task
    public let config: TrainConfig
    /// The loss scaler of `amp: .float16` runs; nil otherwise.
    public let scaler: GradScaler?

    /// Traps if `config.amp` is not nil, `.bfloat16` or `.float16` (a programmer error).
    public init(model: any Module, optimizer: any StatefulOptimizer, schedule: (any LRSchedule)?, task: Task, config: TrainConfig) {
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
        self.task = task
        self.config = config
        synchronizer = model as? any GradientSynchronizing
    }

    /// DDP's synchronisation, when the model is wrapped in it.
    private let synchronizer: (any GradientSynchronizing)?

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
            stepsIntoEpoch = position.step - position.epoch * (task.batchesPerEpoch / Swift.max(config.gradientAccumulation, 1))
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
        var result = TrainResult(epochs: position.epoch, steps: position.step, examplesPerSecond: 0, wallSeconds: 0)
        var epoch = position.epoch
        var step = position.step
        var skippedSteps = 0
        let stepLimit = config.maxSteps ?? Int.max
        while epoch < config.epochs && step < stepLimit {
            model.train()
            let accumulation = Swift.max(config.gradientAccumulation, 1)
            // Optimizer steps per epoch (an incomplete group of micro-batches at the end is dropped).
            let batchCount = task.batchesPerEpoch / accumulation
            // The run's steps: every epoch's batches, or --max-steps when it ends the run sooner.
            let runSteps = Swift.min(stepLimit, config.epochs * batchCount)
            let progress = ProgressBar(total: batchCount, label: "epoch \(epoch + 1)/\(config.epochs)",
                                       enabled: config.showProgress && config.isLeader,
                                       run: (done: step - stepsIntoEpoch, total: runSteps), initial: stepsIntoEpoch)
            let iterator = try task.batches(epoch: epoch)
            var batchIndex = 0
            var runningLoss = 0.0, runningCount = 0
            let epochStart = Date()
            var epochImages = 0
            while step < stepLimit, batchIndex < batchCount, let first = try iterator.next() {
                var batches = [first]
                while batches.count < accumulation, let next = try iterator.next() { batches.append(next) }
                defer { batchIndex += 1 }
                if batchIndex < stepsIntoEpoch { continue }  // resuming mid-epoch: these batches were trained
                let stepStart = Date()
                let lossValue = try optimizationStep(batches, skipped: &skippedSteps)
                step += 1
                config.afterStep?(step)
                // With a scaler, a non-finite loss only skips the step (its gradients are not finite).
                guard lossValue.isFinite || scaler != nil else {
                    throw TrainError.diverged(step: step, tensor: "the loss", value: "\(lossValue)")
                }
                // A finite loss can hide parameters or buffers (a running variance) gone to inf.
                if step % config.logEvery == 0 { try checkFinite(step: step) }
                if let board, config.histogramEvery > 0, step % config.histogramEvery == 0 { addHistograms(board, step: step) }
                let n = batches.reduce(0) { $0 + task.exampleCount($1) }
                trainedImages += n
                epochImages += n
                let stepSeconds = Date().timeIntervalSince(stepStart)
                trainingSeconds += stepSeconds
                runningLoss += lossValue * Double(n)
                runningCount += n
                let rate = Double(epochImages) / Date().timeIntervalSince(epochStart)
                progress.update(batchIndex + 1, String(format: "loss %.4f  %.0f %@/s", lossValue, rate, unit))
                if step % config.logEvery == 0 {
                    try logStep(epoch: epoch, step: step, loss: lossValue, rate: rate, seconds: stepSeconds, skipped: skippedSteps,
                                log: log, board: board)
                }
            }
            progress.finish()
            stepsIntoEpoch = 0
            let finishedEpoch = batchIndex >= batchCount
            if finishedEpoch {
                epoch += 1
                if config.scheduleStep == .perEpoch { schedule?.step() }
            }
            if runningCount > 0 { result.trainLoss = runningLoss / Double(runningCount) }
            try endEpoch(epoch: epoch, step: step, trainLoss: runningCount > 0 ? runningLoss / Double(runningCount) : .nan,
                         evaluate: config.evaluation == .everyEpoch || epoch >= config.epochs || step >= stepLimit,
                         continuing: continuing, result: &result, log: log, board: board)
            continuing = true
        }
        result.epochs = epoch
        result.steps = step
        result.skippedSteps = skippedSteps
        result.wallSeconds = Date().timeIntervalSince(start)
        let rate = trainingSeconds > 0 ? Double(trainedImages) / trainingSeconds : 0
        // Global throughput: every rank trains its share at the same time.
        result.examplesPerSecond = try DistributedMetrics.sum([rate], group: config.processGroup)[0]
        return result
    }

    /// One optimizer step on `batches` (micro-batches): for each, forward (under autocast with mixed
    /// precision) and backward of its loss ÷ their count (scaled with a GradScaler), under DDP's
    /// `noSync` for all but the last; then DDP's synchronisation, clipping, the step (`skipped`
    /// counts the steps the scaler skips) and a per-step schedule. Returns the mean loss.
    private func optimizationStep(_ batches: [Task.Batch], skipped: inout Int) throws -> Double {
        optimizer.zeroGrad()
        var total = 0.0
        for (i, batch) in batches.enumerated() {
            let microStep = {
                var loss = try self.forward { try self.task.loss(self.model, batch) }
                if batches.count > 1 { loss = try loss * (1 / Double(batches.count)) }
                try (self.scaler.map { try $0.scale(loss) } ?? loss).backward()
                total += try loss.item()
            }
            if i < batches.count - 1, let synchronizer { try synchronizer.noSync(microStep) } else { try microStep() }
        }
        try synchronizer?.synchronize()
        if let clip = config.clipNorm {
            if let scaler { _ = try scaler.unscale(optimizer) }
            try ClipGrad.clipGradNorm(model.parameters(), maxNorm: clip)
        }
        if let scaler {
            if try !scaler.step(optimizer) { skipped += 1 }
            scaler.update()
        } else {
            try optimizer.step()
        }
        if config.scheduleStep == .perStep { schedule?.step() }
        return total
    }

    /// A step record in metrics.jsonl and its scalars in TensorBoard.
    private func logStep(epoch: Int, step: Int, loss: Double, rate: Double, seconds: Double, skipped: Int,
                         log: MetricsLog?, board: SummaryWriter?) throws {
        var record: [String: Any] = ["kind": "step", "epoch": epoch, "step": step, "loss": loss,
                                     "lr": optimizer.learningRate, "\(task.exampleName)_per_second": rate,
                                     "step_seconds": seconds, "time": Date().timeIntervalSince1970]
        if let synchronizer { record["communication_seconds"] = synchronizer.lastCommunicationSeconds }
        if let scaler { record["loss_scale"] = scaler.scale; record["skipped_steps"] = skipped }
        try log?.write(record)
        guard let board else { return }
        for key in ["loss", "lr", "\(task.exampleName)_per_second", "communication_seconds", "loss_scale"] {
            if let value = record[key] as? Double { board.addScalar("train/" + key, value, step: step) }
        }
    }

    /// Histograms of every parameter and its gradient.
    private func addHistograms(_ board: SummaryWriter, step: Int) {
        for (name, parameter) in (synchronizer?.module ?? model).namedParameters() {
            board.addHistogram("weights/" + name, parameter.value.toDoubleArray(), step: step)
            if let grad = parameter.grad { board.addHistogram("gradients/" + name, grad.toDoubleArray(), step: step) }
        }
    }

    /// After an epoch (or the steps of the run): the test metrics when due, the epoch record, a
    /// divergence check, and on the leader an atomic checkpoint and the plot.
    private func endEpoch(epoch: Int, step: Int, trainLoss: Double, evaluate due: Bool, continuing: Bool,
                          result: inout TrainResult, log: MetricsLog?, board: SummaryWriter?) throws {
        var record: [String: Any] = ["kind": "epoch", "epoch": epoch, "step": step, "train_loss": trainLoss]
        if due {
            let metrics = try evaluate()
            result.metrics = metrics
            for (name, value) in metrics {
                record[name] = value
                board?.addScalar("test/" + (name.hasPrefix("test_") ? String(name.dropFirst(5)) : name), value, step: step)
            }
        }
        try log?.write(record)
        try checkFinite(step: step)  // never overwrite a good checkpoint with a diverged model
        guard let out = config.outDir, config.isLeader else { return }
        try Checkpoint.save(model: model, optimizer: optimizer, schedule: schedule, scaler: scaler,
                            position: .init(epoch: epoch, step: step), metadata: config.checkpointMetadata, to: out,
                            keep: config.keepCheckpoints, discardOthers: !continuing)
        result.checkpointPath = out + "/" + Checkpoint.modelFile
        try writePlot(metricsPath: out + "/metrics.jsonl", to: out + "/metrics.svg")
    }

    /// The task's test metrics, in evaluation mode without gradients (summed over the ranks).
    public func evaluate() throws -> [String: Double] {
        model.eval()
        defer { model.train() }
        return try Tensor.withNoGrad {
            try task.evaluate(model, forward: { try forward($0) }, group: config.processGroup,
                              showProgress: config.showProgress && config.isLeader)
        }
    }

    /// "img" for images (as the progress bar always said), else the task's example name.
    private var unit: String { task.exampleName == "images" ? "img" : task.exampleName }

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

extension Trainer {
    /// A classification run: cross-entropy on `trainLoader`, accuracy and loss on `testLoader`.
    public convenience init<Train: Dataset, Test: Dataset>(
        model: any Module, optimizer: any StatefulOptimizer, schedule: (any LRSchedule)?,
        trainLoader: DataLoader<Train>, testLoader: DataLoader<Test>?, config: TrainConfig
    ) where Task == ClassificationTask<Train, Test> {
        self.init(model: model, optimizer: optimizer, schedule: schedule,
                  task: ClassificationTask(trainLoader: trainLoader, testLoader: testLoader), config: config)
    }
}
