import CBLAS
import COpenMP
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
    /// thread (Tandem's own kernels, matrix products and oneDNN), leaving the process-wide
    /// setting alone. `DataParallel` gives each replica its share this way, and `DataLoader`
    /// workers run with one.
    public static func withThreadLimit<R>(_ count: Int, _ body: () throws -> R) rethrows -> R {
        try $threadLimit.withValue(max(1, count), operation: body)
    }

    /// Sets the intra-op thread count for Tandem's kernels and oneDNN (OpenMP). Values below 1
    /// are treated as 1. OpenBLAS always runs on one thread: Tandem splits large products
    /// over its own threads (`Kernels.gemm`).
    public static func setNumThreads(_ count: Int) {
        let n = max(1, count)
        threads.store(n, ordering: .relaxed)
        openblas_set_num_threads(1)
        omp_set_num_threads(Int32(n))
    }

    /// Runs `body` over contiguous ranges that cover `0..<count`, on the intra-op thread team
    /// (`numThreads` threads) when `count · costPerItem` is large enough to pay for it, else
    /// on the calling thread. `body` must only touch what its range owns. For element-wise
    /// loops outside `TandemCore`, such as optimizer updates.
    public static func parallelFor(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
        Parallel.forRanges(count, costPerItem: costPerItem, body)
    }

    /// Checks the memory setting `TANDEM_HUGE_PAGES` (`0` or `1`) in `environment`; throws
    /// `TensorError.invalidArgument` for any other value. The allocator itself cannot throw:
    /// it warns once and keeps huge pages on, so programs that want a hard error call this.
    public static func checkMemoryEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        _ = try HostMemory.hugePagesPolicy(environment)
    }

    static func defaultThreadCount() -> Int {
        if let text = ProcessInfo.processInfo.environment["TANDEM_NUM_THREADS"], let n = Int(text), n > 0 {
            return n
        }
        return ProcessInfo.processInfo.activeProcessorCount
    }
}

enum Parallel {
    /// Work items below this size run on the calling thread.
    static let minimumGrain = 32_768

    /// Splits `0..<count` into at most `numThreads · chunksPerThread` contiguous ranges and
    /// runs `body` on each, in parallel when `count * costPerItem` is large enough.
    ///
    /// The ranges run on libgomp's thread team, the one oneDNN uses, so that a single set of
    /// threads serves every kernel (as in PyTorch): after a region its threads spin briefly
    /// (`GOMP_SPINCOUNT`) and take the next region at once, where a parked worker of another
    /// pool takes milliseconds to wake on this VM, and no two pools fight for the cores. Ranges
    /// are claimed one at a time, so with several per thread a thread that starts late
    /// still takes a share. Inside a region (a kernel called from `body`) everything runs on
    /// the calling thread. `threads` overrides `Tandem.numThreads` (tests).
    static func forRanges(_ count: Int, costPerItem: Int = 1, chunksPerThread: Int = 1, threads: Int? = nil,
                          _ body: (Range<Int>) -> Void) {
        let threads = threads ?? Tandem.numThreads
        let chunks = threads == 1 ? 1 : min(threads * max(1, chunksPerThread), max(1, count * costPerItem / minimumGrain), count)
        if chunks <= 1 || omp_in_parallel() != 0 {
            if count > 0 { body(0..<count) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            let region = Region(count: count, chunks: chunks, body: escapable)
            withExtendedLifetime(region) {
                GOMP_parallel(runRegion, Unmanaged.passUnretained(region).toOpaque(), UInt32(min(threads, chunks)), 0)
            }
        }
    }

    /// One parallel loop: its ranges and the next one to claim.
    private final class Region {
        /// The items, and the number of ranges they are split into.
        let count, chunks: Int
        /// What each range runs (escaping only for the duration of the region).
        let body: (Range<Int>) -> Void
        /// The next range to claim.
        let next = Atomic<Int>(0)

        init(count: Int, chunks: Int, body: @escaping (Range<Int>) -> Void) {
            self.count = count; self.chunks = chunks; self.body = body
        }

        /// Claims ranges until none is left.
        func work() {
            while true {
                let chunk = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard chunk < chunks else { return }
                let lo = count * chunk / chunks, hi = count * (chunk + 1) / chunks
                if lo < hi { body(lo..<hi) }
            }
        }
    }

    /// What every thread of the team runs: the `Region` passed as context.
    private static let runRegion: @convention(c) (UnsafeMutableRawPointer?) -> Void = { context in
        guard let context else { return }
        Unmanaged<Region>.fromOpaque(context).takeUnretainedValue().work()
    }
}
