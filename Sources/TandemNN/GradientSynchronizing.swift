/// A model that averages gradients across processes during backward (DistributedDataParallel):
/// the training loop calls `synchronize()` after each backward pass.
public protocol GradientSynchronizing: Module {
    /// The wrapped model.
    var module: any Module { get }
    /// Throws the error of a failed collective of the last backward pass, or names parameters
    /// that got no gradient.
    func synchronize() throws
    /// Seconds the last backward pass waited for its gradient all-reduces.
    var lastCommunicationSeconds: Double { get }
}
