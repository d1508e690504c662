import Dispatch
import Foundation
import Synchronization
import TandemCore

/// Errors of the data-loading pipeline.
public enum DataLoaderError: Error, CustomStringConvertible {
    case invalidConfiguration(String)
    case workerTimeout(batch: Int, seconds: Double)

    public var description: String {
        switch self {
        case let .invalidConfiguration(message): return "DataLoader: \(message)"
        case let .workerTimeout(batch, seconds):
            return "DataLoader: no worker produced batch \(batch) within \(seconds) s; a transform may be stuck, or raise `timeout`"
        }
    }
}

/// Batches of a dataset, like `torch.utils.data.DataLoader`.
///
/// - `shuffle` and `sampler` are mutually exclusive (an error if both are given).
/// - `numWorkers > 0` prepares whole batches on that many background threads, at most
///   `prefetchFactor × numWorkers` ahead of the loop. Batches arrive in the same order
///   whatever the worker count, and a worker's error is thrown by `next()`.
/// - `pinMemory` exists for PyTorch compatibility. On a CPU-only machine there is no
///   host-to-device copy to speed up, so it is a documented no-op.
public final class DataLoader<D: Dataset>: @unchecked Sendable {
    public let dataset: D
    public let batchSize: Int
    public let dropLast: Bool
    public let numWorkers: Int
    public let prefetchFactor: Int
    public let pinMemory: Bool
    /// Seconds the loop waits for one batch before failing.
    public let timeout: Double
    public let sampler: any Sampler
    /// The epoch whose order the next iteration uses (`setEpoch`, as with DistributedSampler).
    public var epoch: Int = 0

    public init(_ dataset: D, batchSize: Int = 1, shuffle: Bool = false, sampler: (any Sampler)? = nil,
                numWorkers: Int = 0, prefetchFactor: Int = 2, pinMemory: Bool = false, dropLast: Bool = false,
                seed: UInt64 = 0, timeout: Double = 300) throws {
        guard batchSize > 0 else { throw DataLoaderError.invalidConfiguration("batchSize must be positive, got \(batchSize)") }
        guard numWorkers >= 0, prefetchFactor > 0 else {
            throw DataLoaderError.invalidConfiguration("numWorkers must be ≥ 0 and prefetchFactor > 0")
        }
        guard timeout > 0 else { throw DataLoaderError.invalidConfiguration("timeout must be positive") }
        if shuffle && sampler != nil {
            throw DataLoaderError.invalidConfiguration("shuffle and sampler are mutually exclusive; shuffle inside the sampler (e.g. DistributedSampler(shuffle: true)) and pass shuffle: false")
        }
        self.dataset = dataset
        self.batchSize = batchSize
        self.dropLast = dropLast
        self.numWorkers = numWorkers
        self.prefetchFactor = prefetchFactor
        self.pinMemory = pinMemory
        self.timeout = timeout
        self.sampler = sampler ?? (shuffle ? RandomSampler(count: dataset.count, seed: seed) : SequentialSampler(count: dataset.count))
    }

    /// Sets the epoch used by the next iteration's sampler and transforms.
    public func setEpoch(_ epoch: Int) { self.epoch = epoch }

    /// Number of batches per epoch.
    public var count: Int {
        let n = sampler.indices(epoch: epoch).count
        return n / batchSize + (dropLast || n % batchSize == 0 ? 0 : 1)
    }

    /// The index lists of this epoch's batches.
    func batchIndices() -> [[Int]] {
        let order = sampler.indices(epoch: epoch)
        var out: [[Int]] = []
        var start = 0
        while start < order.count {
            let end = start + Swift.min(batchSize, order.count - start)
            if end - start == batchSize || !dropLast { out.append(Array(order[start..<end])) }
            start = end
        }
        return out
    }

    /// An iterator over this epoch's batches: `while let (x, y) = try it.next() { ... }`.
    public func makeIterator() -> Iterator { Iterator(self) }

    /// Runs `body` on every batch of the current epoch in order.
    public func forEach(_ body: (_ input: Tensor, _ target: Tensor) throws -> Void) throws {
        let iterator = makeIterator()
        while let (x, y) = try iterator.next() { try body(x, y) }
    }

    /// Yields batches in order, produced inline or by background workers.
    public final class Iterator {
        typealias Batch = (input: Tensor, target: Tensor)
        private let loader: DataLoader<D>
        private let batches: [[Int]]
        private let epoch: Int
        private var position = 0
        private let pipeline: Pipeline?

        init(_ loader: DataLoader<D>) {
            self.loader = loader
            batches = loader.batchIndices()
            epoch = loader.epoch
            pipeline = loader.numWorkers > 0 && !batches.isEmpty
                ? Pipeline(dataset: loader.dataset, batches: batches, epoch: loader.epoch,
                           workers: loader.numWorkers, depth: loader.numWorkers * loader.prefetchFactor)
                : nil
        }

        deinit { pipeline?.cancel() }

        /// The next batch, nil after the last one. Throws a worker's error, or a timeout.
        public func next() throws -> (input: Tensor, target: Tensor)? {
            guard position < batches.count else { return nil }
            defer { position += 1 }
            if let pipeline {
                return try pipeline.take(position, timeout: loader.timeout)
            }
            return try loader.dataset.batch(batches[position], epoch: epoch)
        }
    }

    /// Background workers. Each takes a free slot, then claims the lowest batch not yet
    /// claimed, so batches are started in order and at most `depth` run ahead of the loop
    /// (claiming in order is what makes this deadlock-free). Each batch has a semaphore that
    /// the loop waits on.
    final class Pipeline: @unchecked Sendable {
        private let results: Mutex<[Int: Result<Iterator.Batch, any Error>]> = Mutex([:])
        private let ready: [DispatchSemaphore]
        private let slots: DispatchSemaphore
        private let nextBatch = Atomic<Int>(0)
        private let cancelled = Atomic<Bool>(false)

        init(dataset: D, batches: [[Int]], epoch: Int, workers: Int, depth: Int) {
            ready = batches.map { _ in DispatchSemaphore(value: 0) }
            // Start at 0 and signal up: libdispatch traps if a semaphore is freed below its initial value.
            slots = DispatchSemaphore(value: 0)
            for _ in 0..<depth { slots.signal() }
            for w in 0..<workers {
                let thread = Thread { [self] in
                    while true {
                        // Wait for room; re-check cancellation regularly so a stopped loop frees us.
                        while slots.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
                            if cancelled.load(ordering: .relaxed) { return }
                        }
                        let k = nextBatch.wrappingAdd(1, ordering: .relaxed).oldValue
                        if cancelled.load(ordering: .relaxed) || k >= batches.count {
                            slots.signal()
                            return
                        }
                        // One intra-op thread per worker, as PyTorch's loader workers: a kernel called
                        // here would otherwise start an OpenMP team of its own on every worker thread.
                        let result = Result { try Tandem.withThreadLimit(1) { try dataset.batch(batches[k], epoch: epoch) } }
                        results.withLock { $0[k] = result }
                        ready[k].signal()
                    }
                }
                thread.name = "tandem-data-worker-\(w)"
                thread.start()
            }
        }

        func take(_ k: Int, timeout: Double) throws -> Iterator.Batch {
            guard ready[k].wait(timeout: .now() + timeout) == .success else {
                throw DataLoaderError.workerTimeout(batch: k, seconds: timeout)
            }
            let result = results.withLock { $0.removeValue(forKey: k) }
            slots.signal()
            guard let result else { throw DataLoaderError.workerTimeout(batch: k, seconds: timeout) }
            return try result.get()
        }

        func cancel() { cancelled.store(true, ordering: .relaxed) }
    }
}
