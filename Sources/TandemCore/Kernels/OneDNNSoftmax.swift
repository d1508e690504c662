import CDNNL
import Foundation
import Synchronization

/// float32 softmax and log-softmax over the last axis of a contiguous `[rows, n]` buffer on
/// oneDNN's softmax v2 primitive (Debian's libdnnl 2.6: `dnnl_softmax_accurate` and
/// `dnnl_softmax_log`). oneDNN picks its kernel at run time (AVX-512 where the CPU has it),
/// where Swift's own kernels are compiled for baseline SSE.
///
/// The rows are split over Tandem's threads, each block one single-threaded oneDNN call.
/// Primitives are cached per (block rows, n, algorithm); the backward primitive is made on
/// the first backward pass of a shape. Whatever oneDNN refuses, or would run with
/// its reference implementation, returns false so the caller can use the Swift kernels.
enum DNNLSoftmax {
    /// Smallest element count worth a oneDNN call (below it the Swift kernels win on overhead).
    static let minimumElements = 4096

    private struct Key: Hashable { let rows, n: Int; let log: Bool }

    private final class Plan: @unchecked Sendable {
        let key: Key
        let md: dnnl_memory_desc_t
        let forward: DNNL.Primitive
        private let lock = NSLock()
        private var backwardState: Backward = .notYet
        private enum Backward { case notYet, made(DNNL.Primitive), refused }

        init(key: Key, md: dnnl_memory_desc_t, forward: DNNL.Primitive) {
            self.key = key; self.md = md; self.forward = forward
        }

        var algorithm: dnnl_alg_kind_t { key.log ? dnnl_softmax_log : dnnl_softmax_accurate }

        /// The backward primitive, made on first use; nil when oneDNN refuses it.
        func backward() -> DNNL.Primitive? {
            lock.lock(); defer { lock.unlock() }
            switch backwardState {
            case .made(let p): return p
            case .refused: return nil
            case .notYet:
                let made = makeBackward()
                backwardState = made.map { .made($0) } ?? .refused
                return made
            }
        }

        private func makeBackward() -> DNNL.Primitive? {
            guard let engine = DNNL.engine, let attributes = DNNL.attributes else { return nil }
            var diffSrc = md, diffDst = md, dst = md
            var desc = dnnl_softmax_v2_desc_t()
            var pd: dnnl_primitive_desc_t?
            guard dnnl_softmax_v2_backward_desc_init(&desc, algorithm, &diffSrc, &diffDst, &dst, 1) == dnnl_success,
                  dnnl_primitive_desc_create(&pd, &desc, attributes.handle, engine.handle, forward.pd) == dnnl_success,
                  let pd else { return nil }
            guard !DNNL.isReference(pd) else { dnnl_primitive_desc_destroy(pd); return nil }
            return DNNL.Primitive(pd: pd)
        }
    }

    private enum Entry { case plan(Plan), refused }
    private static let cache = Mutex<[Key: Entry]>([:])

    private static func makePlan(_ key: Key) -> Plan? {
        guard let engine = DNNL.engine, let attributes = DNNL.attributes,
              let md = DNNL.memoryDesc([key.rows, key.n], dnnl_ab) else { return nil }
        var src = md, dst = md
        var desc = dnnl_softmax_v2_desc_t()
        let algorithm = key.log ? dnnl_softmax_log : dnnl_softmax_accurate
        var pd: dnnl_primitive_desc_t?
        guard dnnl_softmax_v2_forward_desc_init(&desc, dnnl_forward_training, algorithm, &src, &dst, 1) == dnnl_success,
              dnnl_primitive_desc_create(&pd, &desc, attributes.handle, engine.handle, nil) == dnnl_success,
              let pd else { return nil }
        guard !DNNL.isReference(pd) else { dnnl_primitive_desc_destroy(pd); return nil }
        guard let forward = DNNL.Primitive(pd: pd) else { return nil }
        return Plan(key: key, md: md, forward: forward)
    }

    private static func plan(rows: Int, n: Int, log: Bool) -> Plan? {
        let key = Key(rows: rows, n: n, log: log)
        if let entry = cache.withLock({ $0[key] }) {
            if case .plan(let p) = entry { return p }
            return nil
        }
        let made = makePlan(key)
        cache.withLock { table in
            if table.count >= 512 { table.removeAll() }
            table[key] = made.map { .plan($0) } ?? .refused
        }
        return made
    }

    /// Runs `body` on blocks of rows with Tandem's threads, each block on one oneDNN thread.
    /// An OpenMP team waits at a barrier for its slowest thread (spinning), which on a busy
    /// machine costs several times the work; row blocks on Tandem's own threads do not.
    /// False when any block failed.
    private static func forRowBlocks(rows: Int, n: Int, _ body: (_ start: Int, _ count: Int) -> Bool) -> Bool {
        guard rows > 0, n > 0, rows * n >= minimumElements else { return false }
        let failed = Mutex(false)
        Parallel.forRanges(rows, costPerItem: n * 8) { range in
            omp_set_num_threads(1)
            if !body(range.lowerBound, range.count) { failed.withLock { $0 = true } }
        }
        return !failed.withLock { $0 }
    }

    /// `dst = softmax(src)` (or log-softmax) along rows of `n` float32 values. False when
    /// oneDNN cannot run it (nothing useful is then in `dst`).
    static func forward(_ src: UnsafeMutableRawPointer, _ dst: UnsafeMutableRawPointer, rows: Int, n: Int, log: Bool) -> Bool {
        forRowBlocks(rows: rows, n: n) { start, count in
            guard let plan = plan(rows: count, n: n, log: log) else { return false }
            let offset = start * n * 4
            return DNNL.execute(plan.forward, [(DNNL.Arg.src, plan.md, src + offset), (DNNL.Arg.dst, plan.md, dst + offset)])
        }
    }

    /// The input gradient from the forward result `dst` and its gradient `diffDst`:
    /// `dst · (g − Σ g·dst)` for softmax, `g − exp(dst) · Σ g` for log-softmax. False when
    /// oneDNN cannot run it.
    static func backward(dst: UnsafeMutableRawPointer, diffDst: UnsafeMutableRawPointer, diffSrc: UnsafeMutableRawPointer,
                         rows: Int, n: Int, log: Bool) -> Bool {
        forRowBlocks(rows: rows, n: n) { start, count in
            guard let plan = plan(rows: count, n: n, log: log), let primitive = plan.backward() else { return false }
            let offset = start * n * 4
            return DNNL.execute(primitive, [(DNNL.Arg.dst, plan.md, dst + offset), (DNNL.Arg.diffDst, plan.md, diffDst + offset),
                                            (DNNL.Arg.diffSrc, plan.md, diffSrc + offset)])
        }
    }

    /// The largest value and the sum of a row of probabilities in one pass (the sum is NaN
    /// when the row holds a NaN; the maximum ignores NaN).
    @inline(__always)
    static func maxAndSum(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> (max: Float, sum: Float) {
        let raw = UnsafeRawPointer(p)
        var high = SIMD8<Float>(repeating: -.infinity), acc = SIMD8<Float>(repeating: 0)
        var j = 0
        while j + 8 <= n {
            let v = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
            high.replace(with: v, where: v .> high)
            acc += v
            j += 8
        }
        var m = high.max(), total = acc.sum()
        while j < n { if p[j] > m { m = p[j] }; total += p[j]; j += 1 }
        return (m, total)
    }

    /// Indices of the rows of `[rows, n]` float32 values holding a NaN (`nanOnly`; for
    /// softmax and log-softmax outputs, which hold no +∞, the row sum tells) or any
    /// non-finite value (the sum of `x · 0`). oneDNN's results can differ from the Swift
    /// kernels' only in such rows (inputs with NaN; all −∞ rows), so callers recompute them
    /// with the Swift kernels.
    static func suspectRows(_ p: UnsafeMutableRawPointer, rows: Int, n: Int, nanOnly: Bool) -> [Int] {
        // One thread: the scan runs at memory speed, and oneDNN's OpenMP workers may still
        // be spinning on the other cores.
        let raw = UnsafeRawPointer(p)
        let scale: Float = nanOnly ? 1 : 0
        let lanesScale = SIMD8<Float>(repeating: scale)
        var found: [Int] = []
        for r in 0..<rows {
            let row = raw + r * n * 4
            var acc = SIMD8<Float>(repeating: 0)
            var j = 0
            while j + 8 <= n {
                acc += row.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) * lanesScale
                j += 8
            }
            var total = acc.sum()
            while j < n { total += row.load(fromByteOffset: j * 4, as: Float.self) * scale; j += 1 }
            if total.isNaN { found.append(r) }
        }
        return found
    }
}
