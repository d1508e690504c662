/// Softmax and log-softmax along one axis, with fused row kernels.
extension Tensor {
    /// exp(x) / sum(exp(x)) along `axis`, computed stably.
    public func softmax(axis: Int) throws -> Tensor {
        try Kernels.requireFloat(self, "softmax")
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "softmax")
        let out = try softmaxRows(axis: a, log: false)
        return Tensor.record("softmax", out, inputs: [self]) { g in
            // dx = y * (g - sum(g * y))
            let y = out
            let dot = try (g * y).sum(axes: [a], keepDim: true)
            return [try y * (g - dot)]
        }
    }

    /// x - logsumexp(x) along `axis`, computed stably.
    public func logSoftmax(axis: Int) throws -> Tensor {
        try Kernels.requireFloat(self, "logSoftmax")
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "logSoftmax")
        let out = try softmaxRows(axis: a, log: true)
        return Tensor.record("logSoftmax", out, inputs: [self]) { g in
            [try Kernels.logSoftmaxBackward(g, out: out, axis: a)]
        }
    }

    private func softmaxRows(axis a: Int, log: Bool) throws -> Tensor {
        let rows = try movedToLast(a)
        let n = rank == 0 ? 1 : shape[a]
        let out = Tensor(uninitializedShape: rows.shape, dtype: dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let s = rows.elementPointer(T.self), d = out.elementPointer(T.self)
            Parallel.forRanges(rows.count / Swift.max(n, 1), costPerItem: n * 8) { range in
                for r in range {
                    // Separate passes (max; exp and sum; scale), each vectorised.
                    let x = s + r * n, y = d + r * n
                    var m = Kernels.rowMax(x, n)
                    if !m.isFinite { m = m.isNaN ? m : 0 }
                    let total = Kernels.rowExpSumStoring(x, y, n, m)
                    if log {
                        let lse = m + T.log(total)
                        for j in 0..<n { y[j] = x[j] - lse }
                    } else {
                        let inv = 1 / total
                        for j in 0..<n { y[j] *= inv }
                    }
                }
            }
        }
        if dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return try out.movedBack(from: a, shape: shape)
    }
}

extension Kernels {
    /// dx = g - exp(y) * sum(g) along the axis, for y = logSoftmax(x).
    static func logSoftmaxBackward(_ g: Tensor, out: Tensor, axis a: Int) throws -> Tensor {
        let gr = try g.movedToLast(a), yr = try out.movedToLast(a)
        let n = out.rank == 0 ? 1 : out.shape[a]
        let dx = Tensor(uninitializedShape: yr.shape, dtype: out.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let gp = gr.elementPointer(T.self), yp = yr.elementPointer(T.self)
            nonisolated(unsafe) let d = dx.elementPointer(T.self)
            Parallel.forRanges(yr.count / Swift.max(n, 1), costPerItem: n * 8) { range in
                for r in range {
                    let gRow = gp + r * n, yRow = yp + r * n, dRow = d + r * n
                    let total = Kernels.reduceRun(gRow, n, 1, .sum)
                    for j in 0..<n { dRow[j] = gRow[j] - T.exp(yRow[j]) * total }
                }
            }
        }
        if out.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return try dx.movedBack(from: a, shape: out.shape)
    }
}
