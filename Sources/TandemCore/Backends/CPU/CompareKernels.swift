/// Comparisons and selection on contiguous buffers.
extension Kernels {
    static func compare(_ a: Tensor, _ b: Tensor, _ kind: CompareKind, op: String) throws -> Tensor {
        // Integer and bool operands compare exactly through float64 (indices and labels fit).
        var (x, y) = (a, b)
        if !x.dtype.isComputeType || !y.dtype.isComputeType || x.dtype != y.dtype {
            x = x.to(.float64)
            y = y.to(.float64)
        }
        let shape = try Shape.broadcast(x.shape, y.shape, op: op)
        let xe = try x.detach().expand(shape).contiguousStorage()
        let ye = try y.detach().expand(shape).contiguousStorage()
        let out = Tensor(uninitializedShape: shape, dtype: .bool)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let p = xe.elementPointer(T.self), q = ye.elementPointer(T.self)
            nonisolated(unsafe) let d = out.elementPointer(Bool.self)
            // `xe` and `ye` are not used after their pointers were taken: keep them alive for the loop.
            withExtendedLifetime((xe, ye)) {
                Parallel.forRanges(out.count) { range in
                    switch kind {
                    case .eq: for i in range { d[i] = p[i] == q[i] }
                    case .ne: for i in range { d[i] = p[i] != q[i] }
                    case .lt: for i in range { d[i] = p[i] < q[i] }
                    case .le: for i in range { d[i] = p[i] <= q[i] }
                    case .gt: for i in range { d[i] = p[i] > q[i] }
                    case .ge: for i in range { d[i] = p[i] >= q[i] }
                    }
                }
            }
        }
        if x.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return out
    }
}

extension Kernels {
    /// `mask ? a : b` elementwise; all three already have the output's shape (`mask` bool and
    /// contiguous, `a` and `b` float32 or float64 of one dtype, any strides).
    static func select(_ mask: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        let ae = a.contiguousStorage(), be = b.contiguousStorage()
        let out = Tensor(uninitializedShape: mask.shape, dtype: a.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let m = mask.elementPointer(Bool.self)
            nonisolated(unsafe) let p = ae.elementPointer(T.self), q = be.elementPointer(T.self)
            nonisolated(unsafe) let d = out.elementPointer(T.self)
            // `ae` and `be` are not used after their pointers were taken: keep them alive for the loop.
            withExtendedLifetime((mask, ae, be)) {
                Parallel.forRanges(out.count) { range in for i in range { d[i] = m[i] ? p[i] : q[i] } }
            }
        }
        if a.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return out
    }
}
