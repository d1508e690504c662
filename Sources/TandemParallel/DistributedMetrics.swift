import TandemDistributed
import TandemNN

/// Distributed evaluation as in the seed: each rank evaluates its shard, then counts are
/// summed over ranks. Use a `DistributedSampler(padding: false)` so each example counts once.
public enum DistributedMetrics {
    /// Sums per-rank values over the group (every rank gets the totals). With no group or one
    /// rank, returns the values unchanged.
    public static func sum(_ values: [Double], group: (any ProcessGroup)?) throws -> [Double] {
        guard let group, group.worldSize > 1 else { return values }
        return try group.allReduce(Tensor(values, shape: [values.count], dtype: .float64), op: .sum).toDoubleArray()
    }

    /// Global accuracy from per-rank correct and total counts.
    public static func accuracy(correct: Int, total: Int, group: (any ProcessGroup)?) throws -> Double {
        let t = try sum([Double(correct), Double(total)], group: group)
        return t[1] > 0 ? t[0] / t[1] : .nan
    }

    /// Adds predictions to a `classes × classes` confusion matrix (rows: true class).
    public static func accumulateConfusion(_ matrix: inout [Int], classes: Int, predictions: [Int], labels: [Int]) {
        for (p, l) in zip(predictions, labels) where (0..<classes).contains(p) && (0..<classes).contains(l) {
            matrix[l * classes + p] += 1
        }
    }

    /// The confusion matrix summed over ranks (for accuracy, per-class recall, mIoU).
    public static func confusion(_ matrix: [Int], group: (any ProcessGroup)?) throws -> [Int] {
        try sum(matrix.map(Double.init), group: group).map { Int($0.rounded()) }
    }
}
