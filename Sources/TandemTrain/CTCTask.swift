import TandemData
import TandemDistributed
import TandemModels
import TandemNN
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

/// Test metrics of a CTC recogniser: greedy and beam-search decoding.
public struct CTCEvaluation: Sendable {
    /// Greedy (best-path) decoding counts.
    public var greedy: CTCMetrics.Counts
    /// Prefix beam search counts.
    public var beam: CTCMetrics.Counts
    /// Mean CTC loss per string (each divided by its target length, as `.mean`).
    public var loss: Double
}

/// Digit-string recognition with CTC: `CTCDigitRecognizer` on `MNISTStrings`. The loss is the CTC
/// loss (blank 0, `.mean`, zeroInfinity) of the `[T, N, 11]` log-probabilities with frame counts
/// from the image widths; the score is greedy and beam-search decoding (sequence accuracy and
/// character error rate) and the mean test loss. Each rank trains on its `DataSharding` shard.
public final class CTCTask: TrainingTask {
    /// The recogniser (what the trainer calls may be a DDP wrapper of it).
    public let recognizer: CTCDigitRecognizer
    public let train: MNISTStrings, test: MNISTStrings
    /// Strings per step on each rank, per evaluation batch, and the beam width.
    public let batchSize: Int, evalBatchSize: Int, beamWidth: Int
    private let sampler: DistributedSampler

    /// The task; `group` is the DDP group (nil: one process); `seed` shuffles.
    public init(recognizer: CTCDigitRecognizer, train: MNISTStrings, test: MNISTStrings, batchSize: Int = 32,
                evalBatchSize: Int = 200, beamWidth: Int = 8, seed: UInt64 = 0, group: (any ProcessGroup)? = nil) throws {
        self.recognizer = recognizer
        self.train = train
        self.test = test
        self.batchSize = batchSize
        self.evalBatchSize = evalBatchSize
        self.beamWidth = beamWidth
        sampler = try DataSharding.trainSampler(count: train.count, rank: group?.rank ?? 0, worldSize: group?.worldSize ?? 1, seed: seed)
    }

    public var exampleName: String { "strings" }
    public var batchesPerEpoch: Int { (sampler.numSamples + batchSize - 1) / batchSize }

    public func batches(epoch: Int) throws -> AnyBatchIterator<MNISTStrings.Batch> {
        let order = sampler.indices(epoch: epoch)
        var start = 0
        let (train, batchSize) = (self.train, self.batchSize)
        return AnyBatchIterator {
            guard start < order.count else { return nil }
            defer { start += batchSize }
            return try train.collate(Array(order[start..<Swift.min(start + batchSize, order.count)]))
        }
    }

    /// The CTC loss of `batch` (`reduction` `.mean` for training; `.none` gives `[N]`).
    public func loss(_ model: any Module, _ batch: MNISTStrings.Batch) throws -> Tensor {
        try loss(model, batch, reduction: .mean)
    }

    /// `loss` with a reduction.
    public func loss(_ model: any Module, _ batch: MNISTStrings.Batch, reduction: Reduction) throws -> Tensor {
        recognizer.widths = batch.widths
        return try Tensor.ctcLoss(logProbs: model(batch.images), targets: batch.targets,
                                  inputLengths: batch.widths.map(CTCDigitRecognizer.frames(forWidth:)),
                                  targetLengths: batch.targetLengths, blank: 0, reduction: reduction, zeroInfinity: true)
    }

    public func exampleCount(_ batch: MNISTStrings.Batch) -> Int { batch.widths.count }

    public func evaluate(_ model: any Module, forward: (() throws -> Tensor) throws -> Tensor,
                         group: (any ProcessGroup)?, showProgress: Bool) throws -> [String: Double] {
        let e = try evaluation(forward: forward, group: group)
        return ["test_loss": e.loss, "greedy_sequence_accuracy": e.greedy.sequenceAccuracy, "greedy_cer": e.greedy.characterErrorRate,
                "beam_sequence_accuracy": e.beam.sequenceAccuracy, "beam_cer": e.beam.characterErrorRate]
    }

    /// Greedy and beam-search counts and the mean loss on the test strings (call in evaluation
    /// mode without gradients). Under DDP each rank decodes its shard and the counts are summed.
    public func evaluation(forward: (() throws -> Tensor) throws -> Tensor = { try $0() },
                           group: (any ProcessGroup)? = nil) throws -> CTCEvaluation {
        let indices = try DataSharding.evalSampler(count: test.count, rank: group?.rank ?? 0, worldSize: group?.worldSize ?? 1).indices(epoch: 0)
        var greedy = CTCMetrics.Counts(), beam = CTCMetrics.Counts()
        var lossSum = 0.0
        do {
            for start in stride(from: 0, to: indices.count, by: evalBatchSize) {
                let batch = try test.collate(Array(indices[start..<Swift.min(start + evalBatchSize, indices.count)]))
                let logProbs = try forward { try recognizer(batch.images, widths: batch.widths) }
                let frames = batch.widths.map(CTCDigitRecognizer.frames(forWidth:))
                let losses = try Tensor.ctcLoss(logProbs: logProbs, targets: batch.targets, inputLengths: frames,
                                                targetLengths: batch.targetLengths, reduction: .none, zeroInfinity: true)
                lossSum += zip(losses.toDoubleArray(), batch.targetLengths).reduce(0) { $0 + $1.0 / Double(Swift.max($1.1, 1)) }
                let targets = batch.targets.toIntArray(), s = batch.targets.shape[1]
                let best = try Tensor.ctcGreedyDecode(logProbs: logProbs, inputLengths: frames)
                let beams = try Tensor.ctcBeamSearchDecode(logProbs: logProbs, inputLengths: frames, beamWidth: beamWidth)
                for b in 0..<frames.count {
                    let target = Array(targets[(b * s)..<(b * s + batch.targetLengths[b])])
                    greedy.add(decoded: best[b].labels, target: target)
                    beam.add(decoded: beams[b].first?.labels ?? [], target: target)
                }
            }
        }
        let sums = try DistributedMetrics.sum(
            [greedy.correct, greedy.strings, greedy.edits, greedy.targetLabels, beam.correct, beam.edits].map(Double.init),
            group: group).map { Int($0.rounded()) }
        let total = try DistributedMetrics.sum([lossSum], group: group)[0]
        greedy.correct = sums[0]; greedy.strings = sums[1]; greedy.edits = sums[2]; greedy.targetLabels = sums[3]
        beam.correct = sums[4]; beam.strings = sums[1]; beam.edits = sums[5]; beam.targetLabels = sums[3]
        return CTCEvaluation(greedy: greedy, beam: beam, loss: total / Double(Swift.max(greedy.strings, 1)))
    }
}
