/// Comparisons (producing bool tensors) and selection.
enum CompareKind { case eq, ne, lt, le, gt, ge }

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

extension Tensor {
    /// Elementwise `==` with broadcasting (bool result).
    public func eq(_ other: Tensor) throws -> Tensor { try Kernels.compare(self, other, .eq, op: "eq") }
    /// Elementwise `!=` (bool result).
    public func ne(_ other: Tensor) throws -> Tensor { try Kernels.compare(self, other, .ne, op: "ne") }
    /// Elementwise `<` (bool result).
    public func lt(_ other: Tensor) throws -> Tensor { try Kernels.compare(self, other, .lt, op: "lt") }
    /// Elementwise `<=` (bool result).
    public func le(_ other: Tensor) throws -> Tensor { try Kernels.compare(self, other, .le, op: "le") }
    /// Elementwise `>` (bool result).
    public func gt(_ other: Tensor) throws -> Tensor { try Kernels.compare(self, other, .gt, op: "gt") }
    /// Elementwise `>=` (bool result).
    public func ge(_ other: Tensor) throws -> Tensor { try Kernels.compare(self, other, .ge, op: "ge") }
    /// Elementwise `==` against a scalar.
    public func eq(_ value: Double) throws -> Tensor { try eq(scalarLike(value)) }
    /// Elementwise `>` against a scalar.
    public func gt(_ value: Double) throws -> Tensor { try gt(scalarLike(value)) }
    /// Elementwise `<` against a scalar.
    public func lt(_ value: Double) throws -> Tensor { try lt(scalarLike(value)) }

    /// `condition ? a : b` elementwise with broadcasting of all three. `condition` is bool
    /// (or any dtype, nonzero meaning true). Gradients flow to `a` and `b` by the mask.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        try Kernels.requireFloat(a, "where")
        guard a.dtype == b.dtype else {
            throw TensorError.dtypeMismatch(op: "where", message: "branches are \(a.dtype) and \(b.dtype)")
        }
        let shape = try Shape.broadcast(Shape.broadcast(condition.shape, a.shape, op: "where"), b.shape, op: "where")
        let mask = try condition.to(.bool).expand(shape).contiguousStorage()
        let ae = try a.detach().expand(shape).contiguousStorage()
        let be = try b.detach().expand(shape).contiguousStorage()
        let out = Tensor(uninitializedShape: shape, dtype: a.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let m = mask.elementPointer(Bool.self)
            nonisolated(unsafe) let p = ae.elementPointer(T.self), q = be.elementPointer(T.self)
            nonisolated(unsafe) let d = out.elementPointer(T.self)
            // `ae` and `be` are not used after their pointers were taken: keep them alive for the loop.
            withExtendedLifetime((ae, be)) {
                Parallel.forRanges(out.count) { range in for i in range { d[i] = m[i] ? p[i] : q[i] } }
            }
        }
        if a.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        let zero = Tensor.zeros([], dtype: a.dtype)
        return record("where", out, inputs: [a, b]) { g in
            [a.requiresGrad ? try Tensor.where(mask, g, zero).sumTo(a.shape) : nil,
             b.requiresGrad ? try Tensor.where(mask, zero, g).sumTo(b.shape) : nil]
        }
    }

    /// Elements where `mask` is true replaced by `value` (mask broadcasts to this shape).
    public func maskedFill(_ mask: Tensor, _ value: Double) throws -> Tensor {
        let shape = try Shape.broadcast(self.shape, mask.shape, op: "maskedFill")
        guard shape == self.shape else {
            throw TensorError.shapeMismatch(op: "maskedFill", message: "mask \(mask.shape) does not broadcast to \(self.shape)")
        }
        return try Tensor.where(mask, scalarLike(value), self)
    }
}
