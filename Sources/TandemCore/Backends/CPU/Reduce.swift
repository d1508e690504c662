/// Reductions over any set of axes.
enum ReduceKind { case sum, max, min }

extension Kernels {
    /// Reduces `x` over `axes` (sorted, unique, non-empty). Output keeps the reduced axes
    /// as size 1. Kept axes are iterated outermost so that threads own disjoint outputs.
    static func reduce(_ x: Tensor, axes: [Int], kind: ReduceKind) -> Tensor {
        var outShape = x.shape
        for a in axes { outShape[a] = 1 }
        switch x.dtype {
        case .float64: return reduceTyped(x, axes, outShape, kind, Double.self)
        default: return reduceTyped(x, axes, outShape, kind, Float.self)
        }
    }

    private static func reduceTyped<T: FloatElement>(
        _ x: Tensor, _ axes: [Int], _ outShape: [Int], _ kind: ReduceKind, _: T.Type
    ) -> Tensor {
        let out = Tensor(uninitializedShape: outShape, dtype: x.dtype)
        if kind == .sum, x.isContiguous, axes == Array(0..<axes.count), axes.count < x.rank {
            columnSums(x, into: out, rows: axes.reduce(1) { $0 * x.shape[$1] }, T.self)
            return out
        }
        let reduced = Set(axes)
        let order = (0..<x.rank).filter { !reduced.contains($0) } + axes
        let outStrides = (0..<x.rank).map { reduced.contains($0) ? 0 : out.strides[$0] }
        let loop = StridedLoop(shape: order.map { x.shape[$0] },
                               strides: [order.map { outStrides[$0] }, order.map { x.strides[$0] }])
        nonisolated(unsafe) let src = x.elementPointer(T.self)
        nonisolated(unsafe) let dst = out.elementPointer(T.self)
        let inner = loop.innerCount, innerStride = loop.innerStride(1)
        let innerReduced = loop.innerStride(0) == 0
        let initial: T = kind == .sum ? 0 : (kind == .max ? -.infinity : .infinity)

        if loop.shape.count == 1 && innerReduced {
            // Full reduction of one run: partial results per thread, then combined.
            let threads = Swift.max(1, Swift.min(Tandem.numThreads, inner / Parallel.minimumGrain))
            var partials = [T](repeating: initial, count: threads)
            partials.withUnsafeMutableBufferPointer { buffer in
                nonisolated(unsafe) let p = buffer.baseAddress!
                Parallel.forRanges(threads) { range in
                    for t in range {
                        let lo = inner * t / threads, hi = inner * (t + 1) / threads
                        p[t] = reduceRun(src + lo * innerStride, hi - lo, innerStride, kind)
                    }
                }
            }
            dst[0] = partials.dropFirst().reduce(partials[0]) { combine($0, $1, kind) }
            return out
        }

        // Initialise outputs, then accumulate run by run.
        dst.update(repeating: initial, count: out.count)
        let outerSize = loop.shape[0]
        let outerKept = loop.strides[0][0] != 0
        let body = { (rows: Range<Int>, sub: StridedLoop) in
            sub.forEachRun(rows: rows) { o, i, _, n in
                if innerReduced {
                    dst[o] = combine(dst[o], reduceRun(src + i, n, innerStride, kind), kind)
                } else {
                    let os = sub.innerStride(0)
                    for k in 0..<n { dst[o + k * os] = combine(dst[o + k * os], src[i + k * innerStride], kind) }
                }
            }
        }
        if outerKept && loop.shape.count > 1 {
            // Split the outermost (kept) dimension across threads.
            let rowsPerOuter = loop.outerCount / outerSize
            Parallel.forRanges(outerSize, costPerItem: x.count / Swift.max(outerSize, 1)) { range in
                body(range.lowerBound * rowsPerOuter..<range.upperBound * rowsPerOuter, loop)
            }
        } else {
            body(0..<loop.outerCount, loop)
        }
        return out
    }

    /// Sums the rows of contiguous `x` viewed as `[rows, cols]` (a bias gradient): each row is
    /// added to a block of accumulators in order, so the loop runs along memory; threads split the columns.
    private static func columnSums<T: FloatElement>(_ x: Tensor, into out: Tensor, rows: Int, _: T.Type) {
        let cols = x.count / Swift.max(rows, 1)
        nonisolated(unsafe) let (src, dst) = (x.elementPointer(T.self), out.elementPointer(T.self))
        let block = 64
        Parallel.forRanges((cols + block - 1) / block, costPerItem: rows * block) { range in
            // Double accumulators, as `reduceRun`: the order of the rows does not matter then.
            let acc = UnsafeMutablePointer<Double>.allocate(capacity: block)
            defer { acc.deallocate() }
            for b in range {
                let lo = b * block, width = Swift.min(cols, lo + block) - lo
                acc.update(repeating: 0, count: width)
                for i in 0..<rows {
                    let row = src + i * cols + lo
                    for j in 0..<width { acc[j] += row[j].doubleValue }
                }
                for j in 0..<width { dst[lo + j] = T(acc[j]) }
            }
        }
    }

    @inline(__always)
    static func combine<T: FloatElement>(_ a: T, _ b: T, _ kind: ReduceKind) -> T {
        switch kind {
        case .sum: return a + b
        case .max: return a.isNaN || a > b ? a : (b.isNaN || b > a ? b : a)
        case .min: return a.isNaN || a < b ? a : (b.isNaN || b < a ? b : a)
        }
    }

    /// Reduces `n` elements at `p` with stride `s`. Sums accumulate in Double.
    @inline(__always)
    static func reduceRun<T: FloatElement>(_ p: UnsafeMutablePointer<T>, _ n: Int, _ s: Int, _ kind: ReduceKind) -> T {
        switch kind {
        case .sum:
            // Eight Double lanes: exact enough for any realistic length, and still vectorisable.
            var lanes: (Double, Double, Double, Double, Double, Double, Double, Double) = (0, 0, 0, 0, 0, 0, 0, 0)
            var i = 0
            if s == 1 {
                while i + 8 <= n {
                    lanes.0 += p[i].doubleValue; lanes.1 += p[i + 1].doubleValue
                    lanes.2 += p[i + 2].doubleValue; lanes.3 += p[i + 3].doubleValue
                    lanes.4 += p[i + 4].doubleValue; lanes.5 += p[i + 5].doubleValue
                    lanes.6 += p[i + 6].doubleValue; lanes.7 += p[i + 7].doubleValue
                    i += 8
                }
            }
            while i < n { lanes.0 += p[i * s].doubleValue; i += 1 }
            return T(((lanes.0 + lanes.1) + (lanes.2 + lanes.3)) + ((lanes.4 + lanes.5) + (lanes.6 + lanes.7)))
        case .max, .min:
            guard n > 0 else { return kind == .max ? -.infinity : .infinity }
            var acc: T = p[0]
            for i in 1..<n { acc = combine(acc, p[i * s], kind) }
            return acc
        }
    }
}

extension Kernels {
    /// True when none of the `count` elements at `p` is inf or NaN: x · 0 is (±)0 for every
    /// finite x and NaN otherwise, so one branch-free SIMD sum answers it.
    static func allFinite<T: FloatElement & SIMDScalar>(_ p: UnsafePointer<T>, count: Int) -> Bool {
        var lanes = SIMD16<T>(repeating: 0)
        var i = 0
        while i + 16 <= count {
            lanes += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<T>.self) * 0
            i += 16
        }
        var rest: T = 0
        while i < count {
            rest += p[i] * 0
            i += 1
        }
        return lanes.sum() + rest == 0
    }
}

extension Kernels {
    /// Σ x² of float32/float64 `t` in float64 lanes, split over the thread team.
    static func sumOfSquares(_ t: Tensor) -> Double {
        let c = t.contiguousStorage()
        func run<T: FloatElement>(_: T.Type) -> Double {
            nonisolated(unsafe) let p = c.elementPointer(T.self)
            let chunks = Swift.max(1, Swift.min(64, c.count / 65_536))
            var partials = [Double](repeating: 0, count: chunks)
            partials.withUnsafeMutableBufferPointer { buffer in
                nonisolated(unsafe) let out = buffer.baseAddress!
                Parallel.forRanges(chunks, costPerItem: c.count / chunks) { range in
                    for chunk in range {
                        let lo = c.count * chunk / chunks, hi = c.count * (chunk + 1) / chunks
                        var lanes: (Double, Double, Double, Double) = (0, 0, 0, 0)
                        var i = lo
                        while i + 4 <= hi {
                            let (a, b, x, y) = (p[i].doubleValue, p[i + 1].doubleValue, p[i + 2].doubleValue, p[i + 3].doubleValue)
                            lanes.0 += a * a; lanes.1 += b * b; lanes.2 += x * x; lanes.3 += y * y
                            i += 4
                        }
                        while i < hi { lanes.0 += p[i].doubleValue * p[i].doubleValue; i += 1 }
                        out[chunk] = (lanes.0 + lanes.1) + (lanes.2 + lanes.3)
                    }
                }
            }
            return partials.reduce(0, +)
        }
        return withExtendedLifetime(c) { c.dtype == .float64 ? run(Double.self) : run(Float.self) }
    }

    /// The extremum of every row of `rows` (contiguous, the reduced axis last) with the index of
    /// its first occurrence (a NaN wins); shaped `keptShape` (values) and `keptShape` int64.
    static func argExtremum(_ rows: Tensor, keptShape: [Int], wantMax: Bool) -> (values: Tensor, indices: Tensor) {
        let n = rows.rank == 0 ? 1 : rows.shape[rows.rank - 1]
        let outer = rows.count / Swift.max(n, 1)
        let values = Tensor(uninitializedShape: keptShape, dtype: rows.dtype)
        let indices = Tensor(uninitializedShape: keptShape, dtype: .int64)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let src = rows.elementPointer(T.self)
            nonisolated(unsafe) let v = values.elementPointer(T.self)
            nonisolated(unsafe) let ix = indices.elementPointer(Int64.self)
            Parallel.forRanges(outer, costPerItem: n) { range in
                for r in range {
                    let row = src + r * n
                    var best = row[0], bestIndex = 0
                    for j in 1..<Swift.max(n, 1) where !best.isNaN {
                        let x = row[j]
                        if x.isNaN || (wantMax ? x > best : x < best) { best = x; bestIndex = j }
                    }
                    v[r] = best
                    ix[r] = Int64(bestIndex)
                }
            }
        }
        withExtendedLifetime(rows) { if rows.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        return (values, indices)
    }

    /// True when no element of a float32 or float64 tensor is inf or NaN.
    static func allFinite(_ t: Tensor) -> Bool {
        let c = t.contiguousStorage()
        return withExtendedLifetime(c) {
            t.dtype == .float64 ? allFinite(UnsafePointer(c.elementPointer(Double.self)), count: c.count)
                                : allFinite(UnsafePointer(c.elementPointer(Float.self)), count: c.count)
        }
    }

    /// A copy of a float32 or float64 tensor with its inf and NaN elements replaced by `value`.
    static func replacingNonFinite(_ t: Tensor, with value: Double) -> Tensor {
        var out = contiguousCopy(t)
        if t.dtype == .float64 {
            out.withUnsafeMutableElements(Double.self) { b in for i in b.indices where !b[i].isFinite { b[i] = value } }
        } else {
            out.withUnsafeMutableElements(Float.self) { b in for i in b.indices where !b[i].isFinite { b[i] = Float(value) } }
        }
        return out
    }

    /// The gradient of `cumprod` along `axis` at `input` for the output gradient `gradOut`:
    /// d out_j / d x_i = ∏_{k ≤ j, k ≠ i} x_k for j ≥ i, O(n²) per row in float64, exact where
    /// elements are zero.
    static func cumprodBackward(input: Tensor, gradOut: Tensor, axis a: Int) throws -> Tensor {
        let x = try input.movedToLast(a).to(.float64)
        let gl = try gradOut.movedToLast(a).to(.float64)
        let n = input.rank == 0 ? 1 : input.shape[a]
        var grad = Tensor.zeros(x.shape, dtype: .float64)
        let xp = x.elementPointer(Double.self), gp = gl.elementPointer(Double.self)
        withExtendedLifetime((x, gl)) {
            grad.withUnsafeMutableElements(Double.self) { d in
                for r in 0..<(x.count / Swift.max(n, 1)) {
                    let base = r * n
                    for i in 0..<n {
                        var partial = 1.0
                        for k in 0..<i { partial *= xp[base + k] }
                        var total = 0.0
                        for j in i..<n {
                            if j > i { partial *= xp[base + j] }
                            total += gp[base + j] * partial
                        }
                        d[base + i] = total
                    }
                }
            }
        }
        return try grad.to(input.dtype).movedBack(from: a, shape: input.shape)
    }
}
