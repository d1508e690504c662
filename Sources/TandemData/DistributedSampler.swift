import TandemCore

/// Gives each of `numReplicas` ranks a disjoint shard of `0..<count`, like PyTorch's
/// `DistributedSampler`: the (optionally shuffled) index list is padded by repeating its
/// beginning to a multiple of `numReplicas` (or truncated with `dropLast`), and rank `r`
/// takes every `numReplicas`-th index starting at `r`. `setEpoch` (through the DataLoader)
/// reshuffles identically on every rank.
///
/// `padding: false` is the exact evaluation mode: nothing is repeated, so ranks may get
/// shards that differ in length by one, and distributed evaluation counts each example once.
public struct DistributedSampler: Sampler {
    public let count: Int
    public let numReplicas: Int
    public let rank: Int
    public let shuffle: Bool
    public let seed: UInt64
    public let dropLast: Bool
    public let padding: Bool

    public init(count: Int, numReplicas: Int, rank: Int, shuffle: Bool = true, seed: UInt64 = 0,
                dropLast: Bool = false, padding: Bool = true) throws {
        guard numReplicas > 0, rank >= 0, rank < numReplicas else {
            throw TensorError.invalidArgument(op: "DistributedSampler", message: "rank \(rank) is not in 0..<\(numReplicas) (numReplicas)")
        }
        guard count >= 0 else { throw TensorError.invalidArgument(op: "DistributedSampler", message: "count must be ≥ 0") }
        self.count = count
        self.numReplicas = numReplicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
        self.padding = padding
    }

    /// Number of indices this rank gets per epoch.
    public var numSamples: Int {
        if !padding { return count / numReplicas + (rank < count % numReplicas ? 1 : 0) }
        return dropLast ? count / numReplicas : (count + numReplicas - 1) / numReplicas
    }

    public func indices(epoch: Int) -> [Int] {
        var order = shuffle ? RandomSampler(count: count, seed: seed).indices(epoch: epoch) : Array(0..<count)
        if padding {
            let total = numSamples * numReplicas
            if total > order.count, !order.isEmpty {
                let base = order
                while order.count < total { order += base.prefix(total - order.count) }
            } else {
                order = Array(order.prefix(total))
            }
        }
        return Swift.stride(from: rank, to: order.count, by: numReplicas).map { order[$0] }
    }
}
