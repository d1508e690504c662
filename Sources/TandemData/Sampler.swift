import TandemCore

/// Chooses the order of example indices for one epoch.
public protocol Sampler: Sendable {
    /// The indices of epoch `epoch`, in order.
    func indices(epoch: Int) -> [Int]
}

/// 0, 1, 2, ... in order.
public struct SequentialSampler: Sampler {
    public let count: Int
    public init(count: Int) { self.count = count }
    public func indices(epoch: Int) -> [Int] { Array(0..<count) }
}

/// A random permutation per epoch, determined by `seed` and the epoch number only.
public struct RandomSampler: Sampler {
    public let count: Int
    public let seed: UInt64
    public init(count: Int, seed: UInt64) { self.count = count; self.seed = seed }
    public func indices(epoch: Int) -> [Int] {
        Tensor.randperm(count, generator: Generator(seed: seed &+ UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9)).toIntArray()
    }
}
