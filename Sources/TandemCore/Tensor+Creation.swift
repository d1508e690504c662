extension Tensor {
    /// A tensor of `shape` filled with `value`.
    public static func full(_ shape: [Int], _ value: Double, dtype: DType = .float32) -> Tensor {
        var t = Tensor(uninitializedShape: shape, dtype: dtype)
        t.fill(value)
        return t
    }

    /// A tensor of zeros.
    public static func zeros(_ shape: [Int], dtype: DType = .float32) -> Tensor {
        let count = Shape.count(shape)
        return Tensor(storage: .zeroed(byteCount: count * dtype.byteSize), shape: shape,
                      strides: Shape.contiguousStrides(shape), dtype: dtype)
    }

    /// A tensor of ones.
    public static func ones(_ shape: [Int], dtype: DType = .float32) -> Tensor { full(shape, 1, dtype: dtype) }

    /// A zero tensor shaped and typed like `other`.
    public static func zeros(like other: Tensor) -> Tensor { zeros(other.shape, dtype: other.dtype) }

    /// A one-element tensor of shape `[]`.
    public static func scalar(_ value: Double, dtype: DType = .float32) -> Tensor { full([], value, dtype: dtype) }

    /// `[start, start+step, ...)` below `end`, as a 1-D tensor.
    public static func arange(_ start: Double = 0, _ end: Double, step: Double = 1, dtype: DType = .int64) throws -> Tensor {
        guard step != 0, (end - start) / step >= 0 else {
            throw TensorError.invalidArgument(op: "arange", message: "step \(step) never goes from \(start) to \(end)")
        }
        let n = Int(((end - start) / step).rounded(.up))
        return Tensor((0..<n).map { start + Double($0) * step }, shape: [n], dtype: dtype)
    }

    /// A tensor from a flat row-major array of values (converted to `dtype`).
    /// Traps if `values.count` differs from the shape's element count (a programmer error).
    public init(_ values: [Double], shape: [Int]? = nil, dtype: DType = .float32) {
        let shape = shape ?? [values.count]
        precondition(Shape.count(shape) == values.count,
                     "Tensor(_:shape:): \(values.count) values do not fill shape \(shape)")
        var t = Tensor(uninitializedShape: shape, dtype: .float64)
        t.withUnsafeMutableElements(Double.self) { _ = $0.initialize(from: values) }
        if dtype != .float64 { t = Kernels.convert(t, to: dtype) }
        self = t
    }

    /// A float32 tensor from Float values.
    public init(_ values: [Float], shape: [Int]? = nil) {
        let shape = shape ?? [values.count]
        precondition(Shape.count(shape) == values.count,
                     "Tensor(_:shape:): \(values.count) values do not fill shape \(shape)")
        var t = Tensor(uninitializedShape: shape, dtype: .float32)
        t.withUnsafeMutableElements(Float.self) { _ = $0.initialize(from: values) }
        self = t
    }

    /// An int64 tensor from integer values.
    public init(int64 values: [Int], shape: [Int]? = nil) {
        let shape = shape ?? [values.count]
        precondition(Shape.count(shape) == values.count,
                     "Tensor(int64:shape:): \(values.count) values do not fill shape \(shape)")
        var t = Tensor(uninitializedShape: shape, dtype: .int64)
        t.withUnsafeMutableElements(Int64.self) { _ = $0.initialize(from: values.lazy.map(Int64.init)) }
        self = t
    }

    /// The number of elements of `shape`, or nil when a size is negative or the product does
    /// not fit in an `Int`: check shapes read from files with this before using them.
    public static func checkedElementCount(_ shape: [Int]) -> Int? { Shape.checkedCount(shape) }

    /// A tensor from raw little-endian bytes in row-major order (as in safetensors files).
    /// Throws `TensorError.invalidData` when `shape` overflows or does not match the byte count.
    public init(bytes: UnsafeRawBufferPointer, shape: [Int], dtype: DType) throws {
        guard let count = Shape.checkedCount(shape), case let (expected, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize),
              !overflow else {
            throw TensorError.invalidData("shape \(shape) has a negative size or more elements than memory can address")
        }
        guard bytes.count == expected else {
            throw TensorError.invalidData("tensor of shape \(shape) and dtype \(dtype) needs \(expected) bytes, got \(bytes.count)")
        }
        var t = Tensor(uninitializedShape: shape, dtype: dtype)
        if expected > 0 { t.withUnsafeMutableBytes { $0.copyMemory(from: bytes) } }
        self = t
    }

    /// Sets every element to `value` (in place, copy-on-write).
    public mutating func fill(_ value: Double) {
        switch dtype {
        case .float32: withUnsafeMutableElements(Float.self) { $0.update(repeating: Float(value)) }
        case .float64: withUnsafeMutableElements(Double.self) { $0.update(repeating: value) }
        case .float16: withUnsafeMutableElements(Float16.self) { $0.update(repeating: Float16(value)) }
        case .bfloat16: withUnsafeMutableElements(BFloat16.self) { $0.update(repeating: BFloat16(Float(value))) }
        case .int32: withUnsafeMutableElements(Int32.self) { $0.update(repeating: Int32(fromDouble: value)) }
        case .int64: withUnsafeMutableElements(Int64.self) { $0.update(repeating: Int64(fromDouble: value)) }
        case .uint8: withUnsafeMutableElements(UInt8.self) { $0.update(repeating: UInt8(fromDouble: value)) }
        case .bool: withUnsafeMutableElements(Bool.self) { $0.update(repeating: value != 0) }
        }
    }

    // MARK: - Reading elements

    /// All elements in row-major order, converted to Double.
    public func toDoubleArray() -> [Double] {
        Kernels.convert(self, to: .float64).withElements(Double.self) { Array($0) }
    }

    /// All elements in row-major order, converted to Float.
    public func toFloatArray() -> [Float] {
        (dtype == .float32 ? self : Kernels.convert(self, to: .float32)).withElements(Float.self) { Array($0) }
    }

    /// All elements in row-major order, converted to Int (exact for integer dtypes).
    public func toIntArray() -> [Int] {
        Kernels.convert(self, to: .int64).withElements(Int64.self) { $0.map { Int($0) } }
    }

    /// The value of a one-element tensor (`item()`).
    public func item() throws -> Double {
        guard count == 1 else {
            throw TensorError.invalidArgument(op: "item", message: "item() needs one element; shape is \(shape)")
        }
        return toDoubleArray()[0]
    }

    // MARK: - Random

    /// Uniform samples in [low, high).
    public static func uniform(_ shape: [Int], low: Double = 0, high: Double = 1, dtype: DType = .float32,
                               generator: Generator = .default) -> Tensor {
        let n = Shape.count(shape)
        return Tensor((0..<n).map { _ in low + (high - low) * generator.nextUnit() }, shape: shape, dtype: dtype)
    }

    /// Normal samples with the given mean and standard deviation (`randn` for the defaults).
    public static func normal(_ shape: [Int], mean: Double = 0, std: Double = 1, dtype: DType = .float32,
                              generator: Generator = .default) -> Tensor {
        let n = Shape.count(shape)
        return Tensor((0..<n).map { _ in mean + std * generator.nextNormal() }, shape: shape, dtype: dtype)
    }

    /// Standard normal samples.
    public static func randn(_ shape: [Int], dtype: DType = .float32, generator: Generator = .default) -> Tensor {
        normal(shape, dtype: dtype, generator: generator)
    }

    /// Samples of 1 with probability `p` and 0 otherwise.
    public static func bernoulli(_ shape: [Int], p: Double, dtype: DType = .float32, generator: Generator = .default) -> Tensor {
        let n = Shape.count(shape)
        return Tensor((0..<n).map { _ in generator.nextUnit() < p ? 1 : 0 }, shape: shape, dtype: dtype)
    }

    /// A random permutation of `0..<n` (int64).
    public static func randperm(_ n: Int, generator: Generator = .default) -> Tensor {
        var values = Array(0..<n)
        var g = generator
        values.shuffle(using: &g)
        return Tensor(int64: values)
    }
}
