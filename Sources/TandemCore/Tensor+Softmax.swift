/// Softmax and log-softmax along one axis, with fused row kernels.
extension Tensor {
    /// exp(x) / sum(exp(x)) along `axis`, computed stably.
    public func softmax(axis: Int) throws -> Tensor {
        if dtype.isLowPrecision { return try widened().softmax(axis: axis) }
        try Kernels.requireFloat(self, "softmax")
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "softmax")
        let (out, _) = try softmaxRows(axis: a, log: false, keepProbabilities: false)
        return Tensor.record("softmax", out, inputs: [self]) { g in
            // dx = y * (g - sum(g * y)); a fused kernel unless the backward pass itself is recorded.
            let y = out
            if !GradMode.isEnabled, let dx = try Kernels.softmaxBackwardDNNL(g, out: y, axis: a) { return [dx] }
            let dot = try (g * y).sum(axes: [a], keepDim: true)
            return [try y * (g - dot)]
        }
    }

    /// x - logsumexp(x) along `axis`, computed stably.
    public func logSoftmax(axis: Int) throws -> Tensor {
        if dtype.isLowPrecision { return try widened().logSoftmax(axis: axis) }
        try Kernels.requireFloat(self, "logSoftmax")
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "logSoftmax")
        // With a graph, keep softmax = exp(out) from the forward pass: backward then needs no exp.
        let (out, probabilities) = try softmaxRows(axis: a, log: true, keepProbabilities: GradMode.enabled && requiresGrad)
        return Tensor.record("logSoftmax", out, inputs: [self]) { g in
            [try Kernels.logSoftmaxBackward(g, out: out, probabilities: probabilities, axis: a)]
        }
    }

    private func softmaxRows(axis a: Int, log: Bool, keepProbabilities: Bool) throws -> (Tensor, Tensor?) {
        let rows = try movedToLast(a)
        let n = rank == 0 ? 1 : shape[a]
        let rowCount = rows.count / Swift.max(n, 1)
        let out = Tensor(uninitializedShape: rows.shape, dtype: dtype)
        // float32 on oneDNN (AVX-512 where available). Log-softmax takes its exps from oneDNN and
        // y = x − log Σ exp(x) from Swift (DNNLSoftmax.logSoftmax): oneDNN's own log-softmax is
        // off by up to 1.4e-6 near 0 (its log(1) is not 0). The softmax is kept for the
        // backward pass when it is needed, which then needs no exp.
        if dtype == .float32, rowCount * n >= DNNLSoftmax.minimumElements {
            let s = rows.elementPointer(Float.self), d = out.elementPointer(Float.self)
            if log {
                let prob = keepProbabilities ? Tensor(uninitializedShape: rows.shape, dtype: dtype) : nil
                let p = prob?.elementPointer(Float.self)
                // `rows` is not used after its pointer was taken: keep it alive until the kernel is done.
                if let suspects = withExtendedLifetime(rows, { DNNLSoftmax.logSoftmax(s, d, p, rows: rowCount, n: n) }) {
                    // Rows with a NaN, ±∞ or all −∞ are redone by the Swift kernel, as PyTorch treats them.
                    withExtendedLifetime(rows) {
                        for r in suspects { Kernels.softmaxRow(s + r * n, d + r * n, p.map { $0 + r * n }, n, log: true) }
                    }
                    return (try out.movedBack(from: a, shape: shape), try prob?.movedBack(from: a, shape: shape))
                }
            } else if DNNLSoftmax.forward(rows.rawElements, out.rawElements, rows: rowCount, n: n, log: false) {
                // Rows with a NaN (NaN or +∞ inputs, all −∞ rows) are redone by the Swift kernel,
                // whose NaN handling differs from oneDNN's.
                withExtendedLifetime(rows) {
                    for r in DNNLSoftmax.suspectRows(out.rawElements, rows: rowCount, n: n, nanOnly: true) {
                        Kernels.softmaxRow(s + r * n, d + r * n, nil, n, log: false)
                    }
                }
                return (try out.movedBack(from: a, shape: shape), nil)
            }
        }
        let probabilities = keepProbabilities ? Tensor(uninitializedShape: rows.shape, dtype: dtype) : nil
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let s = rows.elementPointer(T.self), d = out.elementPointer(T.self)
            nonisolated(unsafe) let prob = probabilities?.elementPointer(T.self)
            withExtendedLifetime(rows) {
                Parallel.forRanges(rowCount, costPerItem: n * 8) { range in
                    for r in range { Kernels.softmaxRow(s + r * n, d + r * n, prob.map { $0 + r * n }, n, log: log) }
                }
            }
        }
        if dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return (try out.movedBack(from: a, shape: shape), try probabilities?.movedBack(from: a, shape: shape))
    }
}

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
