extension Kernels {
    /// Inclusive or exclusive scan (sum or product), forward or reversed, of every row of `rows`
    /// (contiguous, float32 or float64, the scanned axis last), into a new tensor of its shape.
    static func scanRows(_ rows: Tensor, product: Bool, exclusive: Bool, reverse: Bool) -> Tensor {
        let n = rows.rank == 0 ? 1 : rows.shape[rows.rank - 1]
        let out = Tensor(uninitializedShape: rows.shape, dtype: rows.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let s = rows.elementPointer(T.self), d = out.elementPointer(T.self)
            Parallel.forRanges(rows.count / Swift.max(n, 1), costPerItem: n) { range in
                for r in range {
                    var acc: T = product ? 1 : 0
                    for k in 0..<n {
                        let j = r * n + (reverse ? n - 1 - k : k)
                        if exclusive { d[j] = acc }
                        acc = product ? acc * s[j] : acc + s[j]
                        if !exclusive { d[j] = acc }
                    }
                }
            }
        }
        withExtendedLifetime(rows) { if rows.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        return out
    }
}
