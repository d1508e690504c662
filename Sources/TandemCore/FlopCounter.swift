import Synchronization

/// Counts the floating-point operations the matrix products execute (2·m·n·k per product, on
/// OpenBLAS and oneDNN alike, including the tile products inside attention), for measuring what
/// a model really computes. Counting is off unless inside `count`.
public enum FlopCounter {
    private static let total = Atomic<Int>(0)
    private static let active = Atomic<Int>(0)

    /// Runs `body` and returns its result with the FLOPs of the products it ran (on any thread).
    /// Nested or concurrent counts see each other's products.
    public static func count<R>(_ body: () throws -> R) rethrows -> (result: R, flops: Int) {
        active.add(1, ordering: .relaxed)
        defer { active.subtract(1, ordering: .relaxed) }
        let start = total.load(ordering: .relaxed)
        let result = try body()
        return (result, total.load(ordering: .relaxed) - start)
    }

    /// Adds the 2·m·n·k FLOPs of `products` products of `[m, k] · [k, n]` while counting.
    @inline(__always) static func addProducts(m: Int, n: Int, k: Int, products: Int = 1) {
        guard active.load(ordering: .relaxed) > 0 else { return }
        total.add(2 * m * n * k * products, ordering: .relaxed)
    }
}
