import TandemData
import TandemDistributed
import TandemNN
import TandemParallel

/// Supervised classification: cross-entropy of `model(x)` against class indices `y`; scored by
/// accuracy and mean cross-entropy per target element (per image for `[N, C]` logits, per
/// position for sequence logits `[N, C, L]` with targets `[N, L]`, e.g. `ClassFirstLogits`).
public final class ClassificationTask<Train: Dataset, Test: Dataset>: TrainingTask {
    public let trainLoader: DataLoader<Train>
    public let testLoader: DataLoader<Test>?
    public let exampleName: String

    /// A task over the loaders (`exampleName`: what a sample is, for logs).
    public init(trainLoader: DataLoader<Train>, testLoader: DataLoader<Test>?, exampleName: String = "images") {
        self.trainLoader = trainLoader
        self.testLoader = testLoader
        self.exampleName = exampleName
    }

    public var batchesPerEpoch: Int { trainLoader.count }

    public func batches(epoch: Int) throws -> AnyBatchIterator<(Tensor, Tensor)> {
        trainLoader.setEpoch(epoch)
        let iterator = trainLoader.makeIterator()
        return AnyBatchIterator { try iterator.next() }
    }

    public func loss(_ model: any Module, _ batch: (Tensor, Tensor)) throws -> Tensor {
        try Tensor.crossEntropy(model(batch.0), target: batch.1)
    }

    public func exampleCount(_ batch: (Tensor, Tensor)) -> Int { batch.0.shape[0] }

    public func evaluate(_ model: any Module, forward: (() throws -> Tensor) throws -> Tensor,
                         group: (any ProcessGroup)?, showProgress: Bool) throws -> [String: Double] {
        guard let testLoader else { return [:] }
        var correct = 0, total = 0, batches = 0
        var lossSum = 0.0
        // Shown only when evaluation takes more than 1.5 s.
        let progress = ProgressBar(total: testLoader.count, label: "eval", enabled: showProgress, delay: 1.5)
        try testLoader.forEach { x, y in
            let logits = try forward { try model(x) }
            lossSum += try Tensor.crossEntropy(logits, target: y, reduction: .sum).item()
            correct += try logits.argmax(axis: 1).eq(y).toIntArray().reduce(0, +)
            total += y.count
            batches += 1
            progress.update(batches)
        }
        let sums = try DistributedMetrics.sum([Double(correct), Double(total), lossSum], group: group)
        return ["test_accuracy": sums[0] / Swift.max(sums[1], 1), "test_loss": sums[2] / Swift.max(sums[1], 1)]
    }
}
