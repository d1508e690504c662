import CDNNL
import COpenMP
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
        private let madeBackward = DNNL.MadeOnce<DNNL.Primitive>()

        init(key: Key, md: dnnl_memory_desc_t, forward: DNNL.Primitive) {
            self.key = key; self.md = md; self.forward = forward
        }

        var algorithm: dnnl_alg_kind_t { key.log ? dnnl_softmax_log : dnnl_softmax_accurate }

        /// The backward primitive, made on first use; nil when oneDNN refuses it.
        func backward() -> DNNL.Primitive? {
            madeBackward.value(makeBackward)
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

    private static let cache = DNNL.PlanCache<Key, Plan>(limit: 512)

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
        cache.plan(for: Key(rows: rows, n: n, log: log), makePlan)
    }

    /// Runs `body` on blocks of rows with `Parallel.forRanges`, each block a single-threaded
    /// oneDNN call: blocks are claimed one at a time, so a thread that starts late still
    /// takes a share, where a oneDNN call waits at its barrier for its slowest thread.
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

    /// exp on oneDNN: its eltwise primitive (`e = exp(x)`), or, when `shifted`, its binary
    /// primitive with an exp post-op (`e = exp(x − m)` for one `m` per row).
    private struct ExpKey: Hashable { let rows, n: Int; let shifted: Bool }

    private final class ExpPlan: @unchecked Sendable {
        let primitive: DNNL.Primitive
        let md, rowMd: dnnl_memory_desc_t
        init(primitive: DNNL.Primitive, md: dnnl_memory_desc_t, rowMd: dnnl_memory_desc_t) {
            self.primitive = primitive; self.md = md; self.rowMd = rowMd
        }
    }

    private static let expCache = DNNL.PlanCache<ExpKey, ExpPlan>(limit: 512)

    private static func makeExpPlan(_ key: ExpKey) -> ExpPlan? {
        guard let engine = DNNL.engine, let md = DNNL.memoryDesc([key.rows, key.n], dnnl_ab),
              let rowMd = DNNL.memoryDesc([key.rows, 1], dnnl_ab) else { return nil }
        var attr: dnnl_primitive_attr_t?
        guard dnnl_primitive_attr_create(&attr) == dnnl_success, let attr else { return nil }
        defer { dnnl_primitive_attr_destroy(attr) }
        guard dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success else { return nil }
        var pd: dnnl_primitive_desc_t?
        var src = md, src1 = rowMd, dst = md
        if key.shifted {
            var postOps: dnnl_post_ops_t?
            guard dnnl_post_ops_create(&postOps) == dnnl_success, let postOps else { return nil }
            defer { dnnl_post_ops_destroy(postOps) }
            var desc = dnnl_binary_desc_t()
            guard dnnl_post_ops_append_eltwise(postOps, 1, dnnl_eltwise_exp, 0, 0) == dnnl_success,
                  dnnl_primitive_attr_set_post_ops(attr, postOps) == dnnl_success,
                  dnnl_binary_desc_init(&desc, dnnl_binary_sub, &src, &src1, &dst) == dnnl_success,
                  dnnl_primitive_desc_create(&pd, &desc, attr, engine.handle, nil) == dnnl_success else { return nil }
        } else {
            var desc = dnnl_eltwise_desc_t()
            guard dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_inference, dnnl_eltwise_exp, &src, 0, 0) == dnnl_success,
                  dnnl_primitive_desc_create(&pd, &desc, attr, engine.handle, nil) == dnnl_success else { return nil }
        }
        guard let pd else { return nil }
        guard !DNNL.isReference(pd) else { dnnl_primitive_desc_destroy(pd); return nil }
        return DNNL.Primitive(pd: pd).map { ExpPlan(primitive: $0, md: md, rowMd: rowMd) }
    }

    private static func expPlan(rows: Int, n: Int, shifted: Bool) -> ExpPlan? {
        expCache.plan(for: ExpKey(rows: rows, n: n, shifted: shifted), makeExpPlan)
    }

    /// The unshifted row sums of `n` exps that are used as they are: at least `n · 1e-30`, so
    /// that terms oneDNN flushed to zero (each below 1.2e-38) change the sum by under 1.2e-8
    /// of it, and at most 1e30, so that the softmax's scale `1 / sum` stays a normal float.
    static func acceptsUnshiftedSum(_ total: Double, n: Int) -> Bool {
        total >= Double(n) * 1e-30 && total <= 1e30
    }

    /// Log-softmax `y = x − log Σ exp(x)` of `[rows, n]` float32 rows, and the softmax into `p`
    /// when given. The exps run on oneDNN (AVX-512 where available, which Swift's baseline-SSE
    /// code cannot reach), into `p` or else `y`; Swift then sums each row (in double across
    /// 64-element chunks) and writes `y = (x − L) − ℓ` from `x`, with `L + ℓ` the logarithm of
    /// the sum in two floats, so `y` is within an ulp or so of the exact value, as PyTorch's
    /// `(x − m) − log Σ exp(x − m)`.
    ///
    /// A block first takes the cheaper unshifted `exp(x)` and needs no row maximum. If a row's
    /// sum is out of the range `acceptsUnshiftedSum` allows (or overflowed), the block is redone with
    /// `exp(x − m)` (m the row maximum, as PyTorch). Returns the rows with a NaN or an infinite
    /// maximum (±∞ entries, all −∞ rows), for the caller to recompute, or nil when oneDNN
    /// cannot run (then nothing useful is in `y` and `p`).
    static func logSoftmax(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ p: UnsafeMutablePointer<Float>?,
                           rows: Int, n: Int) -> [Int]? {
        let found = Mutex<[Int]>([])
        let e = p ?? y
        let ran = forRowBlocks(rows: rows, n: n) { start, count in
            let offset = start * n
            var maxima: [Float] = []
            var bad: [Int] = []
            /// exp into `e` on oneDNN, unshifted or less the row maxima.
            func exps(shifted: Bool) -> Bool {
                guard let plan = expPlan(rows: count, n: n, shifted: shifted) else { return false }
                let src = UnsafeMutableRawPointer(x + offset), dst = UnsafeMutableRawPointer(e + offset)
                if !shifted { return DNNL.execute(plan.primitive, [(DNNL.Arg.src, plan.md, src), (DNNL.Arg.dst, plan.md, dst)]) }
                return maxima.withUnsafeMutableBytes { rowMaxima in
                    DNNL.execute(plan.primitive, [(DNNL.Arg.src, plan.md, src), (DNNL.Arg.src1, plan.rowMd, rowMaxima.baseAddress!),
                                                  (DNNL.Arg.dst, plan.md, dst)])
                }
            }
            /// Writes y (and p) of every row; false when the exps are unshifted and a row's sum
            /// is out of range (nothing is then reported bad).
            func finish(shifted: Bool) -> Bool {
                bad.removeAll()
                for r in 0..<count {
                    let row = offset + r * n
                    let total = chunkedSum(e + row, n)
                    var m: Float = 0
                    if shifted {
                        m = maxima[r]
                        guard m.isFinite, total.isFinite, total > 0 else { bad.append(start + r); continue }
                    } else if !acceptsUnshiftedSum(total, n: n) {
                        if total.isNaN { bad.append(start + r); continue }
                        return false
                    }
                    let logTotal = Foundation.log(total)
                    let high = Float(logTotal), low = Float(logTotal - Double(high))
                    let xr = x + row, yr = y + row
                    if let p {
                        let pr = p + row, inv = Float(1 / total)
                        for j in 0..<n { yr[j] = ((xr[j] - m) - high) - low; pr[j] *= inv }
                    } else {
                        for j in 0..<n { yr[j] = ((xr[j] - m) - high) - low }
                    }
                }
                return true
            }
            guard exps(shifted: false) else { return false }
            if !finish(shifted: false) {
                maxima = (0..<count).map { Kernels.rowMaxFloat(x + offset + $0 * n, n) }
                guard exps(shifted: true) else { return false }
                _ = finish(shifted: true)
            }
            if !bad.isEmpty { found.withLock { $0.append(contentsOf: bad) } }
            return true
        }
        return ran ? found.withLock { $0 } : nil
    }

    /// The sum of `n` float32 values: float lanes within 64-element chunks, chunks added in
    /// double (a plain float sum of 1000 terms dominated by one can be off by 1e-6).
    @inline(__always)
    static func chunkedSum(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
        let raw = UnsafeRawPointer(p)
        var total: Double = 0
        var j = 0
        while j + 64 <= n {
            var acc = SIMD8<Float>(repeating: 0)
            for k in stride(from: j * 4, to: (j + 64) * 4, by: 32) { acc += raw.loadUnaligned(fromByteOffset: k, as: SIMD8<Float>.self) }
            total += Double(acc.sum())
            j += 64
        }
        var acc = SIMD8<Float>(repeating: 0)
        while j + 8 <= n { acc += raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self); j += 8 }
        var rest = acc.sum()
        while j < n { rest += p[j]; j += 1 }
        return total + Double(rest)
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

extension Kernels {
    /// Softmax or log-softmax of every row of float32 `rows` (contiguous, the axis last) on
    /// oneDNN; nil below `DNNLSoftmax.minimumElements`, for other dtypes, or when oneDNN refuses.
    /// Log-softmax takes its exps from oneDNN and y = x − log Σ exp(x) from Swift
    /// (`DNNLSoftmax.logSoftmax`): oneDNN's own log-softmax is off by up to 1.4e-6 near 0 (its
    /// log(1) is not 0). Rows with a NaN, ±∞ or all −∞ are redone by the Swift kernel, as PyTorch
    /// treats them.
    static func softmaxRowsDNNL(_ rows: Tensor, log: Bool, keepProbabilities: Bool) -> (Tensor, Tensor?)? {
        let n = rows.rank == 0 ? 1 : rows.shape[rows.rank - 1]
        let rowCount = rows.count / Swift.max(n, 1)
        guard rows.dtype == .float32, rowCount * n >= DNNLSoftmax.minimumElements else { return nil }
        let out = Tensor(uninitializedShape: rows.shape, dtype: .float32)
        let s = rows.elementPointer(Float.self), d = out.elementPointer(Float.self)
        return withExtendedLifetime(rows) { () -> (Tensor, Tensor?)? in
            if log {
                let prob = keepProbabilities ? Tensor(uninitializedShape: rows.shape, dtype: .float32) : nil
                let p = prob?.elementPointer(Float.self)
                guard let suspects = DNNLSoftmax.logSoftmax(s, d, p, rows: rowCount, n: n) else { return nil }
                for r in suspects { Kernels.softmaxRow(s + r * n, d + r * n, p.map { $0 + r * n }, n, log: true) }
                return (out, prob)
            }
            guard DNNLSoftmax.forward(rows.rawElements, out.rawElements, rows: rowCount, n: n, log: false) else { return nil }
            for r in DNNLSoftmax.suspectRows(out.rawElements, rows: rowCount, n: n, nanOnly: true) {
                Kernels.softmaxRow(s + r * n, d + r * n, nil, n, log: false)
            }
            return (out, nil)
        }
    }

    /// Softmax backward `y · (g − Σ g·y)` on oneDNN for float32; nil when it does not apply.
    /// Rows whose result is not finite are recomputed in Swift.
    static func softmaxBackwardDNNL(_ g: Tensor, out: Tensor, axis a: Int) throws -> Tensor? {
        guard out.dtype == .float32, g.dtype == .float32, out.count >= DNNLSoftmax.minimumElements else { return nil }
        let gr = try g.movedToLast(a), yr = try out.movedToLast(a)
        let n = out.rank == 0 ? 1 : out.shape[a]
        let rowCount = yr.count / Swift.max(n, 1)
        let dx = Tensor(uninitializedShape: yr.shape, dtype: .float32)
        guard DNNLSoftmax.backward(dst: yr.rawElements, diffDst: gr.rawElements, diffSrc: dx.rawElements,
                                   rows: rowCount, n: n, log: false) else { return nil }
        let gp = gr.elementPointer(Float.self), yp = yr.elementPointer(Float.self), d = dx.elementPointer(Float.self)
        // `gr` and `yr` are not used after their pointers were taken: keep them alive for the loop.
        withExtendedLifetime((gr, yr)) {
            for r in DNNLSoftmax.suspectRows(dx.rawElements, rows: rowCount, n: n, nanOnly: false) {
                let gRow = gp + r * n, yRow = yp + r * n, dRow = d + r * n
                var dot: Float = 0
                for j in 0..<n { dot += gRow[j] * yRow[j] }
                for j in 0..<n { dRow[j] = yRow[j] * (gRow[j] - dot) }
            }
        }
        return try dx.movedBack(from: a, shape: out.shape)
    }
}
