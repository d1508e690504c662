/// A brain floating-point number: the upper 16 bits of a Float32 (8 exponent bits, 7
/// fraction bits; same range as Float, subnormals included).
/// Conversions from Float and Double round to nearest, ties to even; values beyond the
/// largest finite bfloat16 plus half an ulp become ±infinity; NaN stays a (quiet) NaN
/// with its sign.
public struct BFloat16: Sendable, Equatable, CustomStringConvertible {
    /// The raw bit pattern.
    public var bitPattern: UInt16

    /// Wraps a raw bit pattern.
    public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

    /// Rounds a Float to the nearest bfloat16 (ties to even).
    @inline(__always) public init(_ value: Float) {
        // Branch-free, so conversion loops vectorise.
        let bits = value.bitPattern
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        let isNaN = bits & 0x7FFF_FFFF > 0x7F80_0000
        // A NaN keeps its sign and becomes quiet (its payload may sit only in the low bits).
        bitPattern = isNaN ? UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 : UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// Rounds a Double to the nearest bfloat16 (ties to even) with a single rounding: the
    /// Double is first rounded to Float *to odd* (truncate, then set the last bit if
    /// anything was lost), which is exact for the second rounding because Float keeps 16
    /// more fraction bits than bfloat16.
    public init(_ value: Double) {
        var f = Float(value)
        if !value.isNaN, Double(f) != value {
            if Swift.abs(Double(f)) > Swift.abs(value) { f = value > 0 ? f.nextDown : f.nextUp }
            f = Float(bitPattern: f.bitPattern | 1)
        }
        self.init(f)
    }

    /// The exact Float value.
    public var floatValue: Float { Float(bitPattern: UInt32(bitPattern) << 16) }

    public var description: String { floatValue.description }
}

/// A type that tensor storage can hold, with lossless-where-possible conversions used by
/// `Tensor.to(_:)`, array initialisers and element readers.
protocol StorableElement {
    static var dtype: DType { get }
    init(fromDouble value: Double)
    init(fromInt64 value: Int64)
    var doubleValue: Double { get }
    var int64Value: Int64 { get }
}

extension Float: StorableElement {
    static var dtype: DType { .float32 }
    init(fromDouble value: Double) { self = Float(value) }
    init(fromInt64 value: Int64) { self = Float(value) }
    var doubleValue: Double { Double(self) }
    var int64Value: Int64 { self.isFinite ? Int64(exactly: self.rounded(.towardZero)) ?? 0 : 0 }
}

extension Double: StorableElement {
    static var dtype: DType { .float64 }
    init(fromDouble value: Double) { self = value }
    init(fromInt64 value: Int64) { self = Double(value) }
    var doubleValue: Double { self }
    var int64Value: Int64 { self.isFinite ? Int64(exactly: self.rounded(.towardZero)) ?? 0 : 0 }
}

extension Float16: StorableElement {
    static var dtype: DType { .float16 }
    init(fromDouble value: Double) { self = Float16(value) }  // one rounding, not via Float
    init(fromInt64 value: Int64) { self = Float16(Double(value)) }
    var doubleValue: Double { Double(Float(self)) }
    var int64Value: Int64 { Float(self).int64Value }
}

extension BFloat16: StorableElement {
    static var dtype: DType { .bfloat16 }
    init(fromDouble value: Double) { self.init(value) }
    init(fromInt64 value: Int64) { self.init(Double(value)) }
    var doubleValue: Double { Double(floatValue) }
    var int64Value: Int64 { floatValue.int64Value }
}

extension Int32: StorableElement {
    static var dtype: DType { .int32 }
    init(fromDouble value: Double) { self = Int32(truncatingIfNeeded: Int64(fromDouble: value)) }
    init(fromInt64 value: Int64) { self = Int32(truncatingIfNeeded: value) }
    var doubleValue: Double { Double(self) }
    var int64Value: Int64 { Int64(self) }
}

extension Int64: StorableElement {
    static var dtype: DType { .int64 }
    init(fromDouble value: Double) { self = value.isFinite ? Int64(exactly: value.rounded(.towardZero)) ?? 0 : 0 }
    init(fromInt64 value: Int64) { self = value }
    var doubleValue: Double { Double(self) }
    var int64Value: Int64 { self }
}

extension UInt8: StorableElement {
    static var dtype: DType { .uint8 }
    init(fromDouble value: Double) { self = UInt8(truncatingIfNeeded: Int64(fromDouble: value)) }
    init(fromInt64 value: Int64) { self = UInt8(truncatingIfNeeded: value) }
    var doubleValue: Double { Double(self) }
    var int64Value: Int64 { Int64(self) }
}

extension Bool: StorableElement {
    static var dtype: DType { .bool }
    init(fromDouble value: Double) { self = value != 0 }
    init(fromInt64 value: Int64) { self = value != 0 }
    var doubleValue: Double { self ? 1 : 0 }
    var int64Value: Int64 { self ? 1 : 0 }
}
