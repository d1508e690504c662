/// Comparisons (producing bool tensors) and selection.
enum CompareKind { case eq, ne, lt, le, gt, ge }

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
        let out = Kernels.select(mask, try a.detach().expand(shape), try b.detach().expand(shape))
        return Dispatch.record(.where, out, inputs: [a, b], tensors: [mask])
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
