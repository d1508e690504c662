/// Softmax and log-softmax rows and their backward passes, in Swift.
extension Kernels {
    /// Softmax (or log-softmax) of one row of `n` values `x` into `y`; with `prob`, log-softmax
    /// also writes the softmax there. Separate passes (max; exp and sum; scale), each vectorised.
    @inline(__always)
    static func softmaxRow<T: FloatElement>(_ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>,
                                            _ prob: UnsafeMutablePointer<T>?, _ n: Int, log: Bool) {
        var m = Kernels.rowMax(x, n)
        if !m.isFinite { m = m.isNaN ? m : 0 }
        let total = Kernels.rowExpSumStoring(x, y, n, m)
        if log {
            if let p = prob {
                let inv = 1 / total
                for j in 0..<n { p[j] = y[j] * inv }
            }
            // (x − m) − log Σ, not x − (m + log Σ): the latter loses log Σ next to a large m.
            let logTotal = T.log(total)
            for j in 0..<n { y[j] = (x[j] - m) - logTotal }
        } else {
            let inv = 1 / total
            for j in 0..<n { y[j] *= inv }
        }
    }

}

extension Kernels {
    /// dx = g - exp(y) * sum(g) along the axis, for y = logSoftmax(x).
    /// `probabilities` (softmax, if the forward kept it) replaces exp(out).
    static func logSoftmaxBackward(_ g: Tensor, out: Tensor, probabilities: Tensor?, axis a: Int) throws -> Tensor {
        if let probabilities {
            let gr = try g.movedToLast(a), pr = try probabilities.movedToLast(a)
            let n = out.rank == 0 ? 1 : out.shape[a]
            let dx = Tensor(uninitializedShape: pr.shape, dtype: out.dtype)
            func run<T: FloatElement>(_: T.Type) {
                nonisolated(unsafe) let gp = gr.elementPointer(T.self), pp = pr.elementPointer(T.self)
                nonisolated(unsafe) let d = dx.elementPointer(T.self)
                withExtendedLifetime((gr, pr)) {
                    Parallel.forRanges(pr.count / Swift.max(n, 1), costPerItem: n * 2, chunksPerThread: 4) { range in
                        for r in range {
                            let gRow = gp + r * n, pRow = pp + r * n, dRow = d + r * n
                            let total = Kernels.reduceRun(gRow, n, 1, .sum)
                            for j in 0..<n { dRow[j] = gRow[j] - pRow[j] * total }
                        }
                    }
                }
            }
            if out.dtype == .float64 { run(Double.self) } else { run(Float.self) }
            return try dx.movedBack(from: a, shape: out.shape)
        }
        let gr = try g.movedToLast(a), yr = try out.movedToLast(a)
        let n = out.rank == 0 ? 1 : out.shape[a]
        let dx = Tensor(uninitializedShape: yr.shape, dtype: out.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let gp = gr.elementPointer(T.self), yp = yr.elementPointer(T.self)
            nonisolated(unsafe) let d = dx.elementPointer(T.self)
            withExtendedLifetime((gr, yr)) {
                Parallel.forRanges(yr.count / Swift.max(n, 1), costPerItem: n * 8) { range in
                    for r in range {
                        let gRow = gp + r * n, yRow = yp + r * n, dRow = d + r * n
                        let total = Kernels.reduceRun(gRow, n, 1, .sum)
                        if T.self == Float.self {
                            Kernels.subtractScaledExpFloat(
                                UnsafeRawPointer(gRow).assumingMemoryBound(to: Float.self),
                                UnsafeRawPointer(yRow).assumingMemoryBound(to: Float.self),
                                UnsafeMutableRawPointer(dRow).assumingMemoryBound(to: Float.self), n, Float(total.doubleValue))
                        } else {
                            for j in 0..<n { dRow[j] = gRow[j] - T.exp(yRow[j]) * total }
                        }
                    }
                }
            }
        }
        if out.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return try dx.movedBack(from: a, shape: out.shape)
    }
}

extension Kernels {
    /// d[j] = g[j] - exp(y[j]) · total, eight lanes at a time.
    static func subtractScaledExpFloat(_ g: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                                       _ d: UnsafeMutablePointer<Float>, _ n: Int, _ total: Float) {
        let gr = UnsafeRawPointer(g), yr = UnsafeRawPointer(y), dr = UnsafeMutableRawPointer(d)
        let scale = SIMD8<Float>(repeating: total)
        var j = 0
        while j + 8 <= n {
            let e = FastMath.exp8(yr.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self))
            let v = gr.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) - e * scale
            dr.storeBytes(of: v, toByteOffset: j * 4, as: SIMD8<Float>.self)
            j += 8
        }
        while j < n { d[j] = g[j] - FastMath.exp(y[j]) * total; j += 1 }
    }
}

extension Kernels {
    /// Softmax (or log-softmax, with the softmax too when `keepProbabilities`) of every row of
    /// `rows` (contiguous float32 or float64, the axis last), in Swift.
    static func softmaxRows(_ rows: Tensor, log: Bool, keepProbabilities: Bool) -> (Tensor, Tensor?) {
        let n = rows.rank == 0 ? 1 : rows.shape[rows.rank - 1]
        let rowCount = rows.count / Swift.max(n, 1)
        let out = Tensor(uninitializedShape: rows.shape, dtype: rows.dtype)
        let probabilities = keepProbabilities && log ? Tensor(uninitializedShape: rows.shape, dtype: rows.dtype) : nil
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let s = rows.elementPointer(T.self), d = out.elementPointer(T.self)
            nonisolated(unsafe) let prob = probabilities?.elementPointer(T.self)
            withExtendedLifetime(rows) {
                Parallel.forRanges(rowCount, costPerItem: n * 8) { range in
                    for r in range { Kernels.softmaxRow(s + r * n, d + r * n, prob.map { $0 + r * n }, n, log: log) }
                }
            }
        }
        if rows.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return (out, probabilities)
    }
}
