import TandemCore

/// A failure inside a transport, converted by `CollectiveGroup` into a `DistributedError`
/// that names the operation, the group and the rank.
struct TransportError: Error {
    var message: String
    var peer: Int?
    var isTimeout: Bool = false
}

/// The byte-level engine under a process group (Gloo, in-process, ...). Calls of one transport
/// are serialized by its group. Buffers hold `count` elements of `dtype` where it matters.
protocol Transport: AnyObject, Sendable {
    var rank: Int { get }
    var worldSize: Int { get }
    var backendName: String { get }
    func allReduce(_ buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp, timeout: Duration) throws
    func reduce(_ buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp, root: Int, timeout: Duration) throws
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int, timeout: Duration) throws
    /// `output` holds `worldSize * input.count` bytes.
    func allGather(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, timeout: Duration) throws
    /// `output` (root only) holds `worldSize * input.count` bytes.
    func gather(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer?, root: Int, timeout: Duration) throws
    /// `input` (root only) holds `worldSize * output.count` bytes.
    func scatter(_ input: UnsafeRawBufferPointer?, _ output: UnsafeMutableRawBufferPointer, root: Int, timeout: Duration) throws
    func barrier(timeout: Duration) throws
    func send(_ buffer: UnsafeRawBufferPointer, to dst: Int, tag: Int, timeout: Duration) throws
    func recv(_ buffer: UnsafeMutableRawBufferPointer, from src: Int, tag: Int, timeout: Duration) throws
    /// A transport over `ranks` (called by every rank of this transport, in the same order);
    /// nil when this rank is not in `ranks`.
    func subTransport(ranks: [Int], name: String, timeout: Duration) throws -> (any Transport)?
    func close()
    /// Runs `body`, a collective whose caller has nothing else to do until it finishes: a
    /// transport may then wait by spinning rather than sleeping. Calls are serialized.
    func whileCallerWaits<R>(_ body: () throws -> R) rethrows -> R
}

/// Element-wise `a = op(a, b)` over raw buffers (used by transports that reduce in Swift).
func reduceInPlace(_ a: UnsafeMutableRawBufferPointer, _ b: UnsafeRawBufferPointer, count: Int, dtype: DType, op: ReduceOp) {
    func apply<T: Numeric & Comparable>(_: T.Type) {
        let x = a.bindMemory(to: T.self), y = b.bindMemory(to: T.self)
        for i in 0..<count {
            switch op {
            case .sum, .average: x[i] += y[i]
            case .product: x[i] *= y[i]
            case .min: x[i] = Swift.min(x[i], y[i])
            case .max: x[i] = Swift.max(x[i], y[i])
            }
        }
    }
    switch dtype {
    case .float32: apply(Float.self)
    case .float64: apply(Double.self)
    case .int64: apply(Int64.self)
    default: break
    }
}

/// Divides every element by `n` (the average after a sum).
func divideInPlace(_ a: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, by n: Int) {
    switch dtype {
    case .float32:
        let x = a.bindMemory(to: Float.self), d = Float(n)
        for i in 0..<count { x[i] /= d }
    case .float64:
        let x = a.bindMemory(to: Double.self), d = Double(n)
        for i in 0..<count { x[i] /= d }
    case .int64:
        let x = a.bindMemory(to: Int64.self), d = Int64(n)
        for i in 0..<count { x[i] /= d }
    default: break
    }
}

/// The dtypes collectives support.
let supportedDTypes: Set<DType> = [.float32, .float64, .int64]

/// Calls `body` with the tensor's bytes, writable (copy-on-write first).
func withMutableBytes<R>(_ t: inout Tensor, _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
    switch t.dtype {
    case .float32: return try t.withUnsafeMutableBufferPointer(as: Float.self) { try body(UnsafeMutableRawBufferPointer($0)) }
    case .float64: return try t.withUnsafeMutableBufferPointer(as: Double.self) { try body(UnsafeMutableRawBufferPointer($0)) }
    case .int64: return try t.withUnsafeMutableBufferPointer(as: Int64.self) { try body(UnsafeMutableRawBufferPointer($0)) }
    default: throw DistributedError.invalidArgument(operation: "collective", message: "dtype \(t.dtype) is not supported; use float32, float64 or int64")
    }
}

/// Calls `body` with the tensor's bytes in row-major order.
func withBytes<R>(_ t: Tensor, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
    switch t.dtype {
    case .float32: return try t.withUnsafeBufferPointer(as: Float.self) { try body(UnsafeRawBufferPointer($0)) }
    case .float64: return try t.withUnsafeBufferPointer(as: Double.self) { try body(UnsafeRawBufferPointer($0)) }
    case .int64: return try t.withUnsafeBufferPointer(as: Int64.self) { try body(UnsafeRawBufferPointer($0)) }
    default: throw DistributedError.invalidArgument(operation: "collective", message: "dtype \(t.dtype) is not supported; use float32, float64 or int64")
    }
}

extension Transport {
    func whileCallerWaits<R>(_ body: () throws -> R) rethrows -> R { try body() }
}
