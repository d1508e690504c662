struct NegFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { -x }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { -1 }
}
struct ExpFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { T.exp(x) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { y }
}
struct LogFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { T.log(x) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { 1 / x }
}
struct SqrtFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { x.squareRoot() }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { 0.5 / y }
}
struct RsqrtFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { 1 / x.squareRoot() }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { -0.5 * y * y * y }
}
struct AbsFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { Swift.abs(x) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { x > 0 ? 1 : (x < 0 ? -1 : 0) }
}
struct SignFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0)) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { 0 }
}
struct Log1pFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { T.log1p(x) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { 1 / (1 + x) }
}
struct Expm1Fn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { T.expm1(x) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { y + 1 }
}
struct ScalarPowFn: UnaryFunction {
    let exponent: Double
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T {
        exponent == 2 ? x * x : T.pow(x, T(exponent))
    }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T {
        exponent == 2 ? 2 * x : (exponent == 0 ? 0 : T(exponent) * T.pow(x, T(exponent - 1)))
    }
}
struct ClampFn: UnaryFunction {
    let low: Double, high: Double
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T {
        x.isNaN ? x : Swift.min(Swift.max(x, T(low)), T(high))
    }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { x >= T(low) && x <= T(high) ? 1 : 0 }
}

extension Tensor {
    /// Applies `f` elementwise through the dispatcher (`scalars`: f's parameters, for its rule).
    func unary<F: UnaryFunction>(_ op: Op, _ f: F, scalars: [Double] = []) throws -> Tensor {
        try Dispatch.run(op, self) { x in
            try Kernels.requireFloat(x, op.rawValue)
            return Dispatch.record(op, Kernels.map(x, f), inputs: [x], scalars: scalars)
        }
    }

    /// `unary` on oneDNN's eltwise `algorithm` (the same function as `f`) for float32 tensors of
    /// at least `DNNLEltwise.minimumElements`; the Swift kernels otherwise, or when oneDNN refuses.
    func unary<F: UnaryFunction>(_ op: Op, _ f: F, oneDNN algorithm: DNNLEltwise.Algorithm) throws -> Tensor {
        try Dispatch.run(op, self) { x in
            try Kernels.requireFloat(x, op.rawValue)
            if let out = Kernels.eltwiseForwardDNNL(algorithm, x) {
                return Dispatch.record(op, out, inputs: [x], state: algorithm)
            }
            return Dispatch.record(op, Kernels.map(x, f), inputs: [x])
        }
    }

    /// `-x`.
    public static prefix func - (x: Tensor) throws -> Tensor { try x.unary(.neg, NegFn()) }
    /// e^x.
    public func exp() throws -> Tensor { try unary(.exp, ExpFn()) }
    /// Natural logarithm.
    public func log() throws -> Tensor { try unary(.log, LogFn()) }
    /// Square root.
    public func sqrt() throws -> Tensor { try unary(.sqrt, SqrtFn()) }
    /// 1 / sqrt(x).
    public func rsqrt() throws -> Tensor { try unary(.rsqrt, RsqrtFn()) }
    /// |x| (gradient 0 at 0).
    public func abs() throws -> Tensor { try unary(.abs, AbsFn()) }
    /// -1, 0 or 1 (zero gradient).
    public func sign() throws -> Tensor { try unary(.sign, SignFn()) }
    /// log(1 + x), accurate near 0.
    public func log1p() throws -> Tensor { try unary(.log1p, Log1pFn()) }
    /// e^x - 1, accurate near 0.
    public func expm1() throws -> Tensor { try unary(.expm1, Expm1Fn()) }
    /// x clamped into [min, max]; the gradient passes where min ≤ x ≤ max.
    public func clamp(min low: Double = -.infinity, max high: Double = .infinity) throws -> Tensor {
        guard low <= high else {
            throw TensorError.invalidArgument(op: "clamp", message: "min \(low) is greater than max \(high)")
        }
        return try unary(.clamp, ClampFn(low: low, high: high), scalars: [low, high])
    }
}
