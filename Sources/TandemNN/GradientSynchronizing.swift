/// A model that averages gradients across processes during backward (DistributedDataParallel):
/// the training loop calls `synchronize()` after each backward pass.
public protocol GradientSynchronizing: Module {
    /// The wrapped model.
    var module: any Module { get }
    /// Throws the error of a failed collective of the last backward pass, or names parameters
    /// that got no gradient.
    func synchronize() throws
    /// Runs `body` (forward and backward passes of micro-batches) without synchronising: the
    /// gradients accumulate locally and the next synchronised backward pass reduces their sum.
    func noSync<R>(_ body: () throws -> R) rethrows -> R
    /// Seconds the last backward pass waited for its gradient all-reduces.
    var lastCommunicationSeconds: Double { get }
}
