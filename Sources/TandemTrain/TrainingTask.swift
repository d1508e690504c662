import TandemDistributed
import TandemNN

/// What a run trains on and how it is scored: the one thing that differs between
/// classification, CTC sequence recognition and language modelling. `Trainer` does the rest
/// (steps, mixed precision, DDP synchronisation, clipping, schedules, logs, checkpoints).
public protocol TrainingTask: AnyObject {
    /// One training batch.
    associatedtype Batch

    /// The batches of one epoch on this rank.
    var batchesPerEpoch: Int { get }
    /// What the examples are called in logs and throughput ("images", "strings", "windows").
    var exampleName: String { get }
    /// The batches of `epoch` on this rank, in order (the epoch reshuffles identically on every rank).
    func batches(epoch: Int) throws -> AnyBatchIterator<Batch>
    /// The mean training loss of `batch` for `model` (`[]`).
    func loss(_ model: any Module, _ batch: Batch) throws -> Tensor
    /// The number of examples in `batch`.
    func exampleCount(_ batch: Batch) -> Int
    /// Scores `model` on the test data in evaluation mode without gradients, calling it through
    /// `forward` (autocast when the run uses mixed precision); counts summed over `group`.
    /// Metric names are JSON keys: "test_loss", "test_accuracy", "greedy_cer", ...
    func evaluate(_ model: any Module, forward: (() throws -> Tensor) throws -> Tensor,
                  group: (any ProcessGroup)?, showProgress: Bool) throws -> [String: Double]
}

/// An iterator over one epoch's batches whose `next` may throw (a data worker's error).
public struct AnyBatchIterator<Batch> {
    private let nextBatch: () throws -> Batch?
    /// An iterator calling `next` until it returns nil.
    public init(_ next: @escaping () throws -> Batch?) { nextBatch = next }
    /// The next batch, or nil at the end of the epoch.
    public func next() throws -> Batch? { try nextBatch() }
}
