import Dispatch
import Glibc
import Synchronization

/// The handle of an asynchronous collective. `wait()` blocks until the operation has finished
/// and returns its result or throws its error (like `torch.distributed.Work`).
public final class Work<Result: Sendable>: Sendable {
    private let state = Mutex<Swift.Result<Result, any Error>?>(nil)
    private let group = DispatchGroup()

    init() { group.enter() }

    /// A work handle that is already complete.
    init(completed result: Swift.Result<Result, any Error>) {
        group.enter()
        complete(result)
    }

    func complete(_ result: Swift.Result<Result, any Error>) {
        let first = state.withLock { s -> Bool in
            guard s == nil else { return false }
            s = result
            return true
        }
        if first { group.leave() }
    }

    /// True once the operation has finished (successfully or not).
    public var isCompleted: Bool { state.withLock { $0 != nil } }

    /// Blocks until the operation has finished; returns its result or throws its error.
    /// The operation itself is bounded by its timeout, so this returns.
    @discardableResult
    public func wait() throws -> Result {
        spinBriefly()
        group.wait()
        return try state.withLock { $0! }.get()
    }

    /// Polls for up to 2 ms, yielding the core between polls, before blocking. A core
    /// that goes idle while its rank waits for a collective may be halted by the hypervisor,
    /// and waking it costs milliseconds on a VM; collectives of DDP's step usually finish
    /// within this window.
    private func spinBriefly() {
        let deadline = DispatchTime.now().uptimeNanoseconds + 2_000_000
        while !isCompleted && DispatchTime.now().uptimeNanoseconds < deadline { sched_yield() }
    }
}
