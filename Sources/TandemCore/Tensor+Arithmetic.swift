struct AddFn: BinaryFunction { @inline(__always) func value<T: FloatElement>(_ a: T, _ b: T) -> T { a + b } }
struct SubFn: BinaryFunction { @inline(__always) func value<T: FloatElement>(_ a: T, _ b: T) -> T { a - b } }
struct MulFn: BinaryFunction { @inline(__always) func value<T: FloatElement>(_ a: T, _ b: T) -> T { a * b } }
struct DivFn: BinaryFunction { @inline(__always) func value<T: FloatElement>(_ a: T, _ b: T) -> T { a / b } }
struct PowFn: BinaryFunction { @inline(__always) func value<T: FloatElement>(_ a: T, _ b: T) -> T { T.pow(a, b) } }
struct MaxFn: BinaryFunction {
    @inline(__always) func value<T: FloatElement>(_ a: T, _ b: T) -> T { a.isNaN || a > b ? a : (b.isNaN ? b : Swift.max(a, b)) }
}
struct MinFn: BinaryFunction {
    @inline(__always) func value<T: FloatElement>(_ a: T, _ b: T) -> T { a.isNaN || a < b ? a : (b.isNaN ? b : Swift.min(a, b)) }
}
/// 1 where a > b, 0.5 where a == b, 0 elsewhere: how maximum/minimum split their gradient.
struct GreaterShareFn: BinaryFunction {
    @inline(__always) func value<T: FloatElement>(_ a: T, _ b: T) -> T { a > b ? 1 : (a == b ? 0.5 : 0) }
}

extension Tensor {
    /// Sums a broadcast gradient back down to `shape` (the inverse of broadcasting).
    func sumTo(_ target: [Int]) throws -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        var axes = Array(0..<lead)
        for i in 0..<target.count where target[i] == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        var reduced = axes.isEmpty ? self : try sum(axes: axes, keepDim: true)
        if lead > 0 { reduced = try reduced.reshape(target) }
        return reduced
    }

    /// `a + b` with broadcasting.
    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try binary(.add, a, b, AddFn()) }

    /// `a - b` with broadcasting.
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try binary(.sub, a, b, SubFn()) }

    /// `a * b` elementwise with broadcasting.
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try binary(.mul, a, b, MulFn()) }

    /// `a / b` elementwise with broadcasting.
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try binary(.div, a, b, DivFn()) }

    /// `a ** b` elementwise with broadcasting.
    public static func pow(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(.pow, a, b, PowFn()) }

    /// Elementwise maximum with broadcasting; at ties the gradient is split equally.
    public static func maximum(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(.maximum, a, b, MaxFn()) }

    /// Elementwise minimum with broadcasting; at ties the gradient is split equally.
    public static func minimum(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(.minimum, a, b, MinFn()) }

    /// `f(a, b)` elementwise with broadcasting, through the dispatcher (float32 or float64 operands
    /// of one dtype; float16/bfloat16 compute in float32).
    private static func binary<F: BinaryFunction>(_ op: Op, _ a: Tensor, _ b: Tensor, _ f: F) throws -> Tensor {
        try Dispatch.run(op, [a, b]) { operands in
            let (a, b) = (operands[0]!, operands[1]!)
            return Dispatch.record(op, try Kernels.zip(a, b, f, op: op.rawValue), inputs: [a, b])
        }
    }

    /// 1 where a > b, 0.5 where a == b, 0 elsewhere (no gradient): how maximum and minimum split
    /// their gradient.
    static func greaterShare(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try Kernels.zip(a, b, GreaterShareFn(), op: "maximum")
    }

    /// A scalar tensor of this tensor's dtype.
    func scalarLike(_ value: Double) -> Tensor { Tensor.scalar(value, dtype: dtype) }

    public static func + (a: Tensor, b: Double) throws -> Tensor { try a + a.scalarLike(b) }
    public static func + (a: Double, b: Tensor) throws -> Tensor { try b.scalarLike(a) + b }
    public static func - (a: Tensor, b: Double) throws -> Tensor { try a - a.scalarLike(b) }
    public static func - (a: Double, b: Tensor) throws -> Tensor { try b.scalarLike(a) - b }
    public static func * (a: Tensor, b: Double) throws -> Tensor { try a * a.scalarLike(b) }
    public static func * (a: Double, b: Tensor) throws -> Tensor { try b.scalarLike(a) * b }
    public static func / (a: Tensor, b: Double) throws -> Tensor { try a / a.scalarLike(b) }
    public static func / (a: Double, b: Tensor) throws -> Tensor { try b.scalarLike(a) / b }

    /// `a ** exponent` for a scalar exponent.
    public func pow(_ exponent: Double) throws -> Tensor {
        try unary(.powScalar, ScalarPowFn(exponent: exponent), scalars: [exponent])
    }

    public static func += (a: inout Tensor, b: Tensor) throws { a = try a + b }
    public static func -= (a: inout Tensor, b: Tensor) throws { a = try a - b }
    public static func *= (a: inout Tensor, b: Tensor) throws { a = try a * b }
    public static func /= (a: inout Tensor, b: Tensor) throws { a = try a / b }
    public static func += (a: inout Tensor, b: Double) throws { a = try a + b }
    public static func -= (a: inout Tensor, b: Double) throws { a = try a - b }
    public static func *= (a: inout Tensor, b: Double) throws { a = try a * b }
    public static func /= (a: inout Tensor, b: Double) throws { a = try a / b }
}
