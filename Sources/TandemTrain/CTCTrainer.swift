import Foundation
import TandemData
import TandemDistributed
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel

/// Sequence-recognition metrics.
public enum CTCMetrics {
    /// Levenshtein distance between two label sequences: the fewest insertions, deletions and
    /// substitutions that turn `a` into `b` (O(|a|·|b|) time, O(|b|) memory).
    public static func editDistance(_ a: [Int], _ b: [Int]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count), current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    /// Counts over a set of decoded strings: exact matches, summed edit distances and summed
    /// target lengths. `characterErrorRate` = Σ edit distance / Σ target length.
    public struct Counts: Sendable, Equatable {
        /// Strings decoded exactly.
        public var correct = 0
        /// Strings seen.
        public var strings = 0
        /// Σ edit distance(decoded, target).
        public var edits = 0
        /// Σ target length.
        public var targetLabels = 0
        /// Empty counts.
        public init() {}
        /// Adds one decoded string against its target.
        public mutating func add(decoded: [Int], target: [Int]) {
            let d = editDistance(decoded, target)
            edits += d
            correct += d == 0 ? 1 : 0
            strings += 1
            targetLabels += target.count
        }
        /// Fraction of strings decoded exactly.
        public var sequenceAccuracy: Double { strings > 0 ? Double(correct) / Double(strings) : .nan }
        /// Σ edit distance / Σ target length.
        public var characterErrorRate: Double { targetLabels > 0 ? Double(edits) / Double(targetLabels) : .nan }
    }
}

/// Settings of a CTC digit-string training run.
public struct CTCTrainConfig: Sendable {
    /// Passes over the training strings.
    public var epochs = 1
    /// Stop after this many optimizer steps in total (nil: all epochs).
    public var maxSteps: Int? = nil
    /// Strings per step on each rank.
    public var batchSize = 32
    /// Global gradient-norm clip (nil: none).
    public var clipNorm: Double? = 5
    /// Beam width of the beam-search evaluation.
    public var beamWidth = 8
    /// Strings per evaluation batch.
    public var evalBatchSize = 200
    /// Shuffling seed.
    public var seed: UInt64 = 0
    /// Folder for `model.safetensors`, `training_state.safetensors`, `metrics.jsonl` (nil: none).
    public var outDir: String? = nil
    /// Show progress (rank 0 only).
    public var showProgress = true
    /// Write a metrics line every this many steps.
    public var logEvery = 10
    /// The process group of a DDP run (nil: one process).
    public var processGroup: (any ProcessGroup)? = nil
    /// Defaults: one epoch, batch 32, clip 5, beam 8.
    public init() {}

    var isLeader: Bool { (processGroup?.rank ?? 0) == 0 }
}

/// Test metrics of a CTC recogniser: greedy and beam-search decoding.
public struct CTCEvaluation: Sendable {
    /// Greedy (best-path) decoding counts.
    public var greedy: CTCMetrics.Counts
    /// Prefix beam search counts.
    public var beam: CTCMetrics.Counts
    /// Mean CTC loss per string (each divided by its target length, as `.mean`).
    public var loss: Double
}

/// What a CTC run achieved.
public struct CTCTrainResult: Sendable {
    /// Optimizer steps taken.
    public var steps: Int
    /// Completed epochs.
    public var epochs: Int
    /// Test metrics after training.
    public var evaluation: CTCEvaluation?
    /// Mean training loss over the last epoch's steps.
    public var trainLoss: Double
    /// Training strings per second (summed over ranks).
    public var stringsPerSecond: Double
    /// Wall-clock seconds of training and evaluation.
    public var wallSeconds: Double
    /// `model.safetensors` when written.
    public var checkpointPath: String?
}

/// A small training loop for `CTCDigitRecognizer` on `MNISTStrings`: CTC loss (blank 0,
/// `.mean`, zeroInfinity) on `[T, N, 11]` log-probabilities with frame counts from the image
/// widths, an optimizer step per batch (gradient clipping), the schedule stepped per step,
/// evaluation with greedy and beam-search decoding at the end. Under DDP (`processGroup`, and
/// `network` a `DistributedDataParallel` around `model`) each rank trains on a
/// `DistributedSampler` shard and test counts are summed over ranks.
public final class CTCTrainer {
    /// The recogniser (inside `network` under DDP).
    public let model: CTCDigitRecognizer
    /// What is called: `model`, or a `DistributedDataParallel` wrapping it.
    public let network: any Module
    /// The optimizer over `network.parameters()`.
    public let optimizer: any StatefulOptimizer
    /// Stepped once per optimizer step (nil: constant rate).
    public let schedule: (any LRSchedule)?
    /// Training strings.
    public let train: MNISTStrings
    /// Test strings.
    public let test: MNISTStrings
    /// Settings.
    public let config: CTCTrainConfig

    /// A trainer; `network` is `model` or a DDP wrapper of it.
    public init(model: CTCDigitRecognizer, network: (any Module)? = nil, optimizer: any StatefulOptimizer,
                schedule: (any LRSchedule)?, train: MNISTStrings, test: MNISTStrings, config: CTCTrainConfig) {
        self.model = model
        self.network = network ?? model
        self.optimizer = optimizer
        self.schedule = schedule
        self.train = train
        self.test = test
        self.config = config
    }

    /// Steps per epoch on this rank.
    public var stepsPerEpoch: Int {
        (trainSampler().indices(epoch: 0).count + config.batchSize - 1) / config.batchSize
    }

    private func trainSampler() -> any Sampler {
        let group = config.processGroup
        return (try? DataSharding.trainSampler(count: train.count, rank: group?.rank ?? 0, worldSize: group?.worldSize ?? 1, seed: config.seed))
            ?? RandomSampler(count: train.count, seed: config.seed)
    }

    /// The CTC loss of one batch (blank 0, zeroInfinity): `network` maps the images `[N, 1, 28, W]`
    /// to `[T, N, 11]` with frame counts `frames(forWidth:)` of the widths; `[]` for `.mean`/`.sum`, `[N]` for `.none`.
    public func loss(_ batch: MNISTStrings.Batch, reduction: Reduction = .mean) throws -> Tensor {
        model.widths = batch.widths
        let logProbs = try network(batch.images)
        return try Tensor.ctcLoss(logProbs: logProbs, targets: batch.targets,
                                  inputLengths: batch.widths.map(CTCDigitRecognizer.frames(forWidth:)),
                                  targetLengths: batch.targetLengths, blank: 0, reduction: reduction, zeroInfinity: true)
    }

    /// Trains for the configured epochs or steps, then evaluates and checkpoints.
    public func fit() throws -> CTCTrainResult {
        let start = Date()
        var log: MetricsLog?
        if let out = config.outDir, config.isLeader {
            try OutputFolder.prepare(out)
            log = try MetricsLog(path: out + "/metrics.jsonl")
        }
        let sampler = trainSampler()
        let stepLimit = config.maxSteps ?? Int.max
        var step = 0, epoch = 0
        var trainSeconds = 0.0, trainedStrings = 0
        var lastEpochLoss = Double.nan
        while epoch < config.epochs && step < stepLimit {
            network.train()
            let order = sampler.indices(epoch: epoch)
            let batches = stride(from: 0, to: order.count, by: config.batchSize).map {
                Array(order[$0..<Swift.min($0 + config.batchSize, order.count)])
            }
            let progress = ProgressBar(total: batches.count, label: "epoch \(epoch + 1)/\(config.epochs)",
                                    enabled: config.showProgress && config.isLeader)
            var lossSum = 0.0, lossCount = 0
            let epochStart = Date()
            for (k, indices) in batches.enumerated() where step < stepLimit {
                let stepStart = Date()
                let batch = try train.collate(indices)
                optimizer.zeroGrad()
                let loss = try self.loss(batch)
                try loss.backward()
                if let ddp = network as? DistributedDataParallel { try ddp.synchronize() }
                if let clip = config.clipNorm { try ClipGrad.clipGradNorm(network.parameters(), maxNorm: clip) }
                try optimizer.step()
                schedule?.step()
                step += 1
                let value = try loss.item()
                guard value.isFinite else {
                    throw TrainError.invalidArgument("CTC loss became \(value) at step \(step); lower the learning rate")
                }
                lossSum += value; lossCount += 1
                trainedStrings += indices.count
                trainSeconds += Date().timeIntervalSince(stepStart)
                let rate = Double(trainedStrings) / Swift.max(trainSeconds, 1e-9)
                progress.update(k + 1, String(format: "loss %.4f  %.0f strings/s", value, rate))
                if step % config.logEvery == 0 {
                    try log?.write(["kind": "step", "epoch": epoch, "step": step, "loss": value, "lr": optimizer.learningRate,
                                    "strings_per_second": rate])
                }
            }
            if lossCount > 0 { lastEpochLoss = lossSum / Double(lossCount) }
            if lossCount == batches.count { epoch += 1 }
            try log?.write(["kind": "epoch", "epoch": epoch, "step": step, "train_loss": lastEpochLoss,
                            "seconds": Date().timeIntervalSince(epochStart)])
        }
        let rate = try DistributedMetrics.sum([trainSeconds > 0 ? Double(trainedStrings) / trainSeconds : 0],
                                              group: config.processGroup)[0]
        let evaluation = try evaluate()
        var result = CTCTrainResult(steps: step, epochs: epoch, evaluation: evaluation, trainLoss: lastEpochLoss,
                                    stringsPerSecond: rate, wallSeconds: 0)
        try log?.write(["kind": "test", "step": step, "test_loss": evaluation.loss,
                        "greedy_sequence_accuracy": evaluation.greedy.sequenceAccuracy,
                        "greedy_cer": evaluation.greedy.characterErrorRate,
                        "beam_sequence_accuracy": evaluation.beam.sequenceAccuracy,
                        "beam_cer": evaluation.beam.characterErrorRate, "beam_width": config.beamWidth])
        if let out = config.outDir, config.isLeader {
            try Checkpoint.save(model: model, optimizer: optimizer, schedule: schedule,
                                position: .init(epoch: epoch, step: step), metadata: ["model": "ctc-digits"], to: out)
            result.checkpointPath = out + "/" + Checkpoint.modelFile
        }
        result.wallSeconds = Date().timeIntervalSince(start)
        return result
    }

    /// Greedy and beam-search metrics and the mean loss on the test strings (evaluation mode,
    /// no grad). Under DDP each rank decodes its shard and the counts are summed.
    public func evaluate() throws -> CTCEvaluation {
        network.eval()
        defer { network.train() }
        let group = config.processGroup
        let indices = try DataSharding.evalSampler(count: test.count, rank: group?.rank ?? 0, worldSize: group?.worldSize ?? 1).indices(epoch: 0)
        var greedy = CTCMetrics.Counts(), beam = CTCMetrics.Counts()
        var lossSum = 0.0
        try Tensor.withNoGrad {
            for start in stride(from: 0, to: indices.count, by: config.evalBatchSize) {
                let batch = try test.collate(Array(indices[start..<Swift.min(start + config.evalBatchSize, indices.count)]))
                let logProbs = try model(batch.images, widths: batch.widths)
                let frames = batch.widths.map(CTCDigitRecognizer.frames(forWidth:))
                let losses = try Tensor.ctcLoss(logProbs: logProbs, targets: batch.targets, inputLengths: frames,
                                                targetLengths: batch.targetLengths, reduction: .none, zeroInfinity: true)
                lossSum += zip(losses.toDoubleArray(), batch.targetLengths).reduce(0) { $0 + $1.0 / Double(Swift.max($1.1, 1)) }
                let targets = batch.targets.toIntArray(), s = batch.targets.shape[1]
                let best = try Tensor.ctcGreedyDecode(logProbs: logProbs, inputLengths: frames)
                let beams = try Tensor.ctcBeamSearchDecode(logProbs: logProbs, inputLengths: frames, beamWidth: config.beamWidth)
                for b in 0..<frames.count {
                    let target = Array(targets[(b * s)..<(b * s + batch.targetLengths[b])])
                    greedy.add(decoded: best[b].labels, target: target)
                    beam.add(decoded: beams[b].first?.labels ?? [], target: target)
                }
            }
        }
        let sums = try DistributedMetrics.sum(
            [greedy.correct, greedy.strings, greedy.edits, greedy.targetLabels, beam.correct, beam.edits].map(Double.init),
            group: config.processGroup).map { Int($0.rounded()) }
        let total = try DistributedMetrics.sum([lossSum], group: config.processGroup)[0]
        greedy.correct = sums[0]; greedy.strings = sums[1]; greedy.edits = sums[2]; greedy.targetLabels = sums[3]
        beam.correct = sums[4]; beam.strings = sums[1]; beam.edits = sums[5]; beam.targetLabels = sums[3]
        return CTCEvaluation(greedy: greedy, beam: beam, loss: total / Double(Swift.max(greedy.strings, 1)))
    }
}
