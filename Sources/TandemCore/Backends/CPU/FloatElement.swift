import Foundation

/// The element types kernels compute in: Float (float32) and Double (float64).
/// Elementary functions dispatch to fast Float paths or to libm.
protocol FloatElement: BinaryFloatingPoint, StorableElement, Comparable, Sendable {
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    static func log1p(_ x: Self) -> Self
    static func expm1(_ x: Self) -> Self
    static func tanh(_ x: Self) -> Self
    static func erf(_ x: Self) -> Self
    static func pow(_ x: Self, _ y: Self) -> Self
    init(_ value: Double)
}

extension Float: FloatElement {
    @inline(__always) static func exp(_ x: Float) -> Float { FastMath.exp(x) }
    @inline(__always) static func log(_ x: Float) -> Float { Foundation.log(x) }
    @inline(__always) static func log1p(_ x: Float) -> Float { Foundation.log1p(x) }
    @inline(__always) static func expm1(_ x: Float) -> Float { Foundation.expm1(x) }
    @inline(__always) static func tanh(_ x: Float) -> Float { Foundation.tanh(x) }
    @inline(__always) static func erf(_ x: Float) -> Float { Foundation.erf(x) }
    @inline(__always) static func pow(_ x: Float, _ y: Float) -> Float { Foundation.pow(x, y) }
}

extension Double: FloatElement {
    @inline(__always) static func exp(_ x: Double) -> Double { Foundation.exp(x) }
    @inline(__always) static func log(_ x: Double) -> Double { Foundation.log(x) }
    @inline(__always) static func log1p(_ x: Double) -> Double { Foundation.log1p(x) }
    @inline(__always) static func expm1(_ x: Double) -> Double { Foundation.expm1(x) }
    @inline(__always) static func tanh(_ x: Double) -> Double { Foundation.tanh(x) }
    @inline(__always) static func erf(_ x: Double) -> Double { Foundation.erf(x) }
    @inline(__always) static func pow(_ x: Double, _ y: Double) -> Double { Foundation.pow(x, y) }
}

/// Branch-free elementary functions for Float that the compiler can vectorise.
enum FastMath {
    /// e^x with a relative error of about 1 ulp (Cephes-style range reduction and a
    /// degree-6 polynomial). Subnormal results are kept; exp(-inf) = 0, exp(+inf) = +inf,
    /// NaN stays NaN.
    @inline(__always) static func exp(_ x: Float) -> Float {
        // NaN passes through min/max and the wrapping integer ops below without trapping,
        // and is returned by the last select. Everything here is branch-free, so loops vectorise.
        let clamped = Swift.min(Swift.max(x, -103.9), 88.72283)
        // Round x·log2(e) to an integer n with the 1.5·2^23 trick; n's bits land in the low
        // mantissa bits of `shifted`.
        let shifted = clamped * 1.44269504088896341 + 12_582_912
        let n = shifted - 12_582_912
        let r = clamped - n * 0.693359375 + n * 2.12194440e-4
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * r * r + r + 1
        // 2^n as two factors, so that results down to the subnormal range stay exact.
        let k = Int32(bitPattern: shifted.bitPattern &- 0x4B40_0000)
        let k1 = k >> 1
        let k2 = k &- k1
        let s1 = Float(bitPattern: UInt32(bitPattern: (k1 &+ 127) << 23))
        let s2 = Float(bitPattern: UInt32(bitPattern: (k2 &+ 127) << 23))
        var result = p * s1 * s2
        result = x < -103.9 ? 0 : result
        result = x > 88.72283 ? .infinity : result
        return x != x ? x : result
    }

    /// `exp` on eight lanes, for kernels written with explicit SIMD.
    @inline(__always)
    static func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        var clamped = x.replacing(with: -103.9, where: x .< -103.9)
        clamped.replace(with: 88.72283, where: clamped .> 88.72283)
        let shifted = clamped * 1.44269504088896341 + 12582912
        let n = shifted - 12582912
        let k = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let r = clamped - n * 0.693359375 + n * 2.12194440e-4
        var poly = SIMD8<Float>(repeating: 1.9875691500e-4)
        poly = poly * r + 1.3981999507e-3
        poly = poly * r + 8.3334519073e-3
        poly = poly * r + 4.1665795894e-2
        poly = poly * r + 1.6666665459e-1
        poly = poly * r + 5.0000001201e-1
        poly = poly * r * r + r + 1
        let k1 = k &>> 1
        let k2 = k &- k1
        let s1 = unsafeBitCast((k1 &+ 127) &<< 23, to: SIMD8<Float>.self)
        let s2 = unsafeBitCast((k2 &+ 127) &<< 23, to: SIMD8<Float>.self)
        var result = poly * s1 * s2
        result.replace(with: 0, where: x .< -103.9)
        result.replace(with: .infinity, where: x .> 88.72283)
        return result
    }
}
