import TandemData

/// How a data-parallel run splits its data: one path for one process and for N.
///
/// `--batch-size B` is per process, as in PyTorch's DDP: N processes train on a global batch
/// of N·B. Step s of epoch e uses the examples at positions N·B·s ..< N·B·(s+1) of one
/// permutation of the training set, determined by the seed and the epoch only; rank r takes
/// positions r, r+N, r+2N, … of that block. So a run of 1 process with batch N·B and a run of
/// N processes with batch B draw exactly the same global batches, and with SyncBatchNorm they
/// compute the same model up to float rounding.
public enum DataSharding {
    /// The training sampler of `rank` in a group of `worldSize`: the permutation of
    /// `0..<count` for (`seed`, epoch), padded to a multiple of `worldSize`, every
    /// `worldSize`-th index from `rank`. Throws if `rank` is not in `0..<worldSize`.
    public static func trainSampler(count: Int, rank: Int = 0, worldSize: Int = 1, seed: UInt64) throws -> DistributedSampler {
        try DistributedSampler(count: count, numReplicas: worldSize, rank: rank, shuffle: true, seed: seed)
    }

    /// The evaluation sampler of `rank`: in order, no padding, so every example is counted
    /// exactly once over the group.
    public static func evalSampler(count: Int, rank: Int = 0, worldSize: Int = 1) throws -> DistributedSampler {
        try DistributedSampler(count: count, numReplicas: worldSize, rank: rank, shuffle: false, padding: false)
    }
}
