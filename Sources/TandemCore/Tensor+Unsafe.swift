/// Direct element access for kernels outside TandemCore (optimizers, collectives, data loading).
extension Tensor {
    private func checkElementType<T>(_: T.Type, op: String) throws {
        let expected: DType?
        switch T.self {
        case is Float.Type: expected = .float32
        case is Double.Type: expected = .float64
        case is Int64.Type: expected = .int64
        case is Int32.Type: expected = .int32
        case is UInt8.Type: expected = .uint8
        case is Bool.Type: expected = .bool
        default: expected = nil
        }
        guard expected == dtype else {
            throw TensorError.dtypeMismatch(op: op, message: "tensor is \(dtype), accessed as \(T.self)")
        }
    }

    /// Calls `body` with the contiguous elements, writable in place. The storage is copied
    /// first if it is shared or strided (copy-on-write), so other values never change.
    /// The autograd identity (a leaf's accumulated gradient and hooks) is kept.
    public mutating func withUnsafeMutableBufferPointer<T, R>(as type: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R) throws -> R {
        try checkElementType(T.self, op: "withUnsafeMutableBufferPointer")
        return try withUnsafeMutableElements(T.self, body)
    }

    /// Calls `body` with the elements in row-major order (a contiguous copy if strided).
    public func withUnsafeBufferPointer<T, R>(as type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) throws -> R {
        try checkElementType(T.self, op: "withUnsafeBufferPointer")
        return try withElements(T.self, body)
    }

    /// Calls `body` with the elements as `T` in row-major order (a contiguous copy if strided),
    /// valid until `body` returns: the scoped read access of code outside the backends.
    func withElements<T, R>(_: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        let c = contiguousStorage()
        return try withExtendedLifetime(c) { try body(UnsafeBufferPointer(start: c.elementPointer(T.self), count: c.count)) }
    }

    /// Calls `body` with this tensor's bytes, writable in place (copied first if shared or
    /// strided, as `withUnsafeMutableElements`).
    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        let byteCount = count * dtype.byteSize
        return try withUnsafeMutableElements(UInt8.self) { try body(UnsafeMutableRawBufferPointer(start: $0.baseAddress, count: byteCount)) }
    }

    /// Overwrites this tensor's elements with `source`'s (same shape; converted to this dtype),
    /// in place: a parameter keeps its autograd identity (gradient, hooks).
    public mutating func copyValues(from source: Tensor) throws {
        guard source.shape == shape else {
            throw TensorError.shapeMismatch(op: "copyValues", message: "source \(source.shape) into \(shape)")
        }
        let converted = source.dtype == dtype ? source.contiguousStorage() : Kernels.convert(source, to: dtype)
        makeUniquelyOwned()
        // `converted` (a temporary when the dtypes differ) is not used after its address was taken.
        withExtendedLifetime(converted) {
            storage.bytes.copyMemory(from: converted.storage.bytes + converted.offset * dtype.byteSize, byteCount: count * dtype.byteSize)
        }
    }
}
