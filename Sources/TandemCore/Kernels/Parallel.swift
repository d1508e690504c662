import CBLAS
import CDNNL
import Dispatch
import Foundation
import Synchronization

/// Global settings of the Tandem runtime.
public enum Tandem {
    private static let threads = Atomic<Int>(0)

    /// The number of intra-op threads kernels use. Defaults to `TANDEM_NUM_THREADS` when set,
    /// else the number of active processors.
    public static var numThreads: Int {
        let current = threads.load(ordering: .relaxed)
        let base: Int
        if current > 0 {
            base = current
        } else {
            base = defaultThreadCount()
            setNumThreads(base)
        }
        if let limit = threadLimit { return min(base, limit) }
        return base
    }

    @TaskLocal static var threadLimit: Int?

    /// Runs `body` with at most `count` intra-op threads for the kernels it calls on this
    /// thread (Tandem's own kernels and oneDNN; OpenBLAS keeps its process-wide count), leaving
    /// the process-wide setting alone. `DataParallel` gives each replica its share this way.
    public static func withThreadLimit<R>(_ count: Int, _ body: () throws -> R) rethrows -> R {
        try $threadLimit.withValue(max(1, count), operation: body)
    }

    /// Sets the intra-op thread count for Tandem's kernels, OpenBLAS and oneDNN (OpenMP).
    /// Values below 1 are treated as 1.
    public static func setNumThreads(_ count: Int) {
        let n = max(1, count)
        threads.store(n, ordering: .relaxed)
        openblas_set_num_threads(Int32(n))
        omp_set_num_threads(Int32(n))
    }

    static func defaultThreadCount() -> Int {
        if let text = ProcessInfo.processInfo.environment["TANDEM_NUM_THREADS"], let n = Int(text), n > 0 {
            return n
        }
        return ProcessInfo.processInfo.activeProcessorCount
    }
}

/// Lets a non-Sendable closure run on the concurrent pool. Only kernels use it, and each
/// worker touches a disjoint part of the output.
private struct UncheckedSendable<T>: @unchecked Sendable { let value: T }

enum Parallel {
    /// Work items below this size run on the calling thread.
    static let minimumGrain = 32_768

    /// Splits `0..<count` into at most `numThreads · chunksPerThread` contiguous ranges and
    /// runs `body` on each, in parallel when `count * costPerItem` is large enough.
    ///
    /// Dispatch runs the chunks no worker has claimed on the calling thread. On a busy machine
    /// a worker can start late, and with one chunk per thread the caller then waits for it;
    /// with several per thread the late worker still takes a share. Short kernels (0.1 ms)
    /// gain from 4 per thread: log-softmax 256×1000 on 2 threads shared with another process
    /// took 0.13 ms with 8 chunks against 0.17 ms with 2 (0.18 ms on 1 thread).
    static func forRanges(_ count: Int, costPerItem: Int = 1, chunksPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        let threads = Tandem.numThreads
        let chunks = threads == 1 ? 1 : min(threads * max(1, chunksPerThread), max(1, count * costPerItem / minimumGrain), count)
        if chunks <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            let box = UncheckedSendable(value: escapable)
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let lo = count * chunk / chunks
                let hi = count * (chunk + 1) / chunks
                if lo < hi { box.value(lo..<hi) }
            }
        }
    }
}
