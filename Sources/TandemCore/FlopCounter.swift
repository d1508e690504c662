/// Counts the floating-point operations of the matrix products (2·m·n·k each, on OpenBLAS and
/// oneDNN alike) and of attention (the tile products its kernel runs), for measuring what a
/// model really computes. The count belongs to the task that asks (a task-local tally, added
/// on the calling thread before the work is split), so tests running at the same time do not
/// see each other's products. Convolutions are not counted.
public enum FlopCounter {
    /// One `count`'s running total (written only by the counting task's thread).
    final class Tally: @unchecked Sendable { var flops = 0 }

    @TaskLocal static var tally: Tally?

    /// Runs `body` and returns its result with the FLOPs of the products and attention it ran;
    /// an enclosing `count` includes them too.
    public static func count<R>(_ body: () throws -> R) rethrows -> (result: R, flops: Int) {
        let mine = Tally()
        let result = try $tally.withValue(mine) { try body() }
        tally?.flops += mine.flops
        return (result, mine.flops)
    }

    /// Adds `flops` while counting.
    @inline(__always) static func add(_ flops: @autoclosure () -> Int) {
        guard let tally else { return }
        tally.flops += flops()
    }
}
