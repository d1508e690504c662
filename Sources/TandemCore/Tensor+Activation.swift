struct ReluFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { x > 0 ? x : (x.isNaN ? x : 0) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { x > 0 ? 1 : 0 }
}
struct SigmoidFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { 1 / (1 + T.exp(-x)) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { y * (1 - y) }
}
struct TanhFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { T.tanh(x) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T { 1 - y * y }
}
struct SiluFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { x / (1 + T.exp(-x)) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T {
        let s = 1 / (1 + T.exp(-x))
        return s * (1 + x * (1 - s))
    }
}
struct GeluErfFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T { 0.5 * x * (1 + T.erf(x * T(0.7071067811865476))) }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T {
        let cdf = 0.5 * (1 + T.erf(x * T(0.7071067811865476)))
        let pdf = T.exp(-0.5 * x * x) * T(0.3989422804014327)
        return cdf + x * pdf
    }
}
struct GeluTanhFn: UnaryFunction {
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T {
        let inner = T(0.7978845608028654) * (x + T(0.044715) * x * x * x)
        return 0.5 * x * (1 + T.tanh(inner))
    }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T {
        let inner = T(0.7978845608028654) * (x + T(0.044715) * x * x * x)
        let t = T.tanh(inner)
        let dInner = T(0.7978845608028654) * (1 + 3 * T(0.044715) * x * x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dInner
    }
}
struct SoftplusFn: UnaryFunction {
    let beta: Double, threshold: Double
    @inline(__always) func value<T: FloatElement>(_ x: T) -> T {
        let bx = T(beta) * x
        return bx > T(threshold) ? x : T.log1p(T.exp(bx)) / T(beta)
    }
    @inline(__always) func derivative<T: FloatElement>(x: T, y: T) -> T {
        let bx = T(beta) * x
        return bx > T(threshold) ? 1 : 1 / (1 + T.exp(-bx))
    }
}

extension Tensor {
    /// max(x, 0); gradient 0 at x = 0.
    public func relu() throws -> Tensor { try unary(.relu, ReluFn()) }
    /// 1 / (1 + e^-x).
    public func sigmoid() throws -> Tensor { try unary(.sigmoid, SigmoidFn()) }
    /// Hyperbolic tangent.
    public func tanh() throws -> Tensor { try unary(.tanh, TanhFn()) }
    /// x · sigmoid(x) (also called swish).
    public func silu() throws -> Tensor { try unary(.silu, SiluFn()) }

    /// How GELU is computed: exactly with erf, or with PyTorch's tanh approximation.
    public enum GeluApproximation: Sendable { case none, tanh }

    /// 0.5·x·(1 + erf(x/√2)), or the tanh approximation (float32 tensors of 4,096 elements or
    /// more on oneDNN's vectorised kernels).
    public func gelu(approximate: GeluApproximation = .none) throws -> Tensor {
        switch approximate {
        case .none: return try unary(.gelu, GeluErfFn(), oneDNN: .geluErf)
        case .tanh: return try unary(.geluTanh, GeluTanhFn(), oneDNN: .geluTanh)
        }
    }

    /// log(1 + e^(βx))/β, or x where βx > threshold (PyTorch's defaults β = 1, threshold 20).
    public func softplus(beta: Double = 1, threshold: Double = 20) throws -> Tensor {
        try unary(.softplus, SoftplusFn(beta: beta, threshold: threshold), scalars: [beta, threshold])
    }
}
