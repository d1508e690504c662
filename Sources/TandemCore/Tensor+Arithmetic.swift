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
    public static func + (a: Tensor, b: Tensor) throws -> Tensor {
        let out = try Kernels.zip(a, b, AddFn(), op: "add")
        return record("add", out, inputs: [a, b]) { g in [try g.sumTo(a.shape), try g.sumTo(b.shape)] }
    }

    /// `a - b` with broadcasting.
    public static func - (a: Tensor, b: Tensor) throws -> Tensor {
        let out = try Kernels.zip(a, b, SubFn(), op: "sub")
        return record("sub", out, inputs: [a, b]) { g in [try g.sumTo(a.shape), try (-g).sumTo(b.shape)] }
    }

    /// `a * b` elementwise with broadcasting.
    public static func * (a: Tensor, b: Tensor) throws -> Tensor {
        let out = try Kernels.zip(a, b, MulFn(), op: "mul")
        return record("mul", out, inputs: [a, b]) { g in
            [a.requiresGrad ? try (g * b.detach()).sumTo(a.shape) : nil,
             b.requiresGrad ? try (g * a.detach()).sumTo(b.shape) : nil]
        }
    }

    /// `a / b` elementwise with broadcasting.
    public static func / (a: Tensor, b: Tensor) throws -> Tensor {
        let out = try Kernels.zip(a, b, DivFn(), op: "div")
        return record("div", out, inputs: [a, b]) { g in
            let gb = try g / b.detach()
            return [a.requiresGrad ? try gb.sumTo(a.shape) : nil,
                    b.requiresGrad ? try (-(gb * out.detach())).sumTo(b.shape) : nil]
        }
    }

    /// `a ** b` elementwise with broadcasting.
    public static func pow(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        let out = try Kernels.zip(a, b, PowFn(), op: "pow")
        return record("pow", out, inputs: [a, b]) { g in
            let (ad, bd, od) = (a.detach(), b.detach(), out.detach())
            return [a.requiresGrad ? try (g * bd * Tensor.pow(ad, bd - 1)).sumTo(a.shape) : nil,
                    b.requiresGrad ? try (g * od * ad.log()).sumTo(b.shape) : nil]
        }
    }

    /// Elementwise maximum with broadcasting; at ties the gradient is split equally.
    public static func maximum(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        let out = try Kernels.zip(a, b, MaxFn(), op: "maximum")
        return record("maximum", out, inputs: [a, b]) { g in
            let share = try Kernels.zip(a, b, GreaterShareFn(), op: "maximum")
            return [try (g * share).sumTo(a.shape), try (g * (1 - share)).sumTo(b.shape)]
        }
    }

    /// Elementwise minimum with broadcasting; at ties the gradient is split equally.
    public static func minimum(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        let out = try Kernels.zip(a, b, MinFn(), op: "minimum")
        return record("minimum", out, inputs: [a, b]) { g in
            let share = try Kernels.zip(b, a, GreaterShareFn(), op: "minimum")
            return [try (g * share).sumTo(a.shape), try (g * (1 - share)).sumTo(b.shape)]
        }
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
        if dtype.isLowPrecision { return try widened().pow(exponent).to(dtype) }
        try Kernels.requireFloat(self, "pow")
        return try unary("pow", ScalarPowFn(exponent: exponent))
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
