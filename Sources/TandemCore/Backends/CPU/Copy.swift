import Foundation

/// Copies and dtype conversions.
enum Kernels {
    /// A contiguous copy of any tensor (same dtype, no autograd).
    static func contiguousCopy(_ t: Tensor) -> Tensor {
        var out = Tensor(uninitializedShape: t.shape, dtype: t.dtype)
        switch t.dtype.byteSize {
        case 8: copyStrided(t, into: &out, as: UInt64.self)
        case 4: copyStrided(t, into: &out, as: UInt32.self)
        case 2: copyStrided(t, into: &out, as: UInt16.self)
        default: copyStrided(t, into: &out, as: UInt8.self)
        }
        return out
    }

    private static func copyStrided<T>(_ src: Tensor, into dst: inout Tensor, as _: T.Type) {
        let s = src.elementPointer(T.self)
        let d = dst.elementPointer(T.self)
        if src.isContiguous {
            d.update(from: s, count: src.count)
            return
        }
        let loop = StridedLoop(shape: src.shape, strides: [dst.strides, src.strides])
        let si = loop.innerStride(1)
        let di = loop.innerStride(0)
        nonisolated(unsafe) let (sp, dp) = (s, d)
        loop.parallelForEachRun { o0, o1, _, n in
            var dIdx = o0, sIdx = o1
            for _ in 0..<n {
                dp[dIdx] = sp[sIdx]
                dIdx += di
                sIdx += si
            }
        }
    }

    /// Converts every element of `t` to `dtype` into a new contiguous tensor.
    static func convert(_ t: Tensor, to dtype: DType) -> Tensor {
        let src = t.contiguousStorage()
        var out = Tensor(uninitializedShape: t.shape, dtype: dtype)
        func run<S: StorableElement>(_: S.Type) {
            switch dtype {
            case .float32: convertBuffer(src, S.self, &out, Float.self)
            case .float64: convertBuffer(src, S.self, &out, Double.self)
            case .float16: convertBuffer(src, S.self, &out, Float16.self)
            case .bfloat16: convertBuffer(src, S.self, &out, BFloat16.self)
            case .int32: convertBuffer(src, S.self, &out, Int32.self)
            case .int64: convertBuffer(src, S.self, &out, Int64.self)
            case .uint8: convertBuffer(src, S.self, &out, UInt8.self)
            case .bool: convertBuffer(src, S.self, &out, Bool.self)
            }
        }
        switch t.dtype {
        case .float32: run(Float.self)
        case .float64: run(Double.self)
        case .float16: run(Float16.self)
        case .bfloat16: run(BFloat16.self)
        case .int32: run(Int32.self)
        case .int64: run(Int64.self)
        case .uint8: run(UInt8.self)
        case .bool: run(Bool.self)
        }
        return out
    }

    private static func convertBuffer<S: StorableElement, D: StorableElement>(
        _ src: Tensor, _: S.Type, _ dst: inout Tensor, _: D.Type
    ) {
        let s = src.elementPointer(S.self)
        let d = dst.elementPointer(D.self)
        let n = src.count
        let integral = !S.dtype.isFloatingPoint && !D.dtype.isFloatingPoint
        if (S.self == Float.self && D.dtype.isLowPrecision) || (S.dtype.isLowPrecision && D.self == Float.self) {
            convertFloat16Family(UnsafeMutableRawPointer(s), S.dtype, UnsafeMutableRawPointer(d), D.dtype, count: n)
        } else if S.self == Float.self, D.self == Double.self {
            let sf = UnsafeMutableRawPointer(s).assumingMemoryBound(to: Float.self)
            let df = UnsafeMutableRawPointer(d).assumingMemoryBound(to: Double.self)
            for i in 0..<n { df[i] = Double(sf[i]) }
        } else if S.self == Double.self, D.self == Float.self {
            let sf = UnsafeMutableRawPointer(s).assumingMemoryBound(to: Double.self)
            let df = UnsafeMutableRawPointer(d).assumingMemoryBound(to: Float.self)
            for i in 0..<n { df[i] = Float(sf[i]) }
        } else if integral {
            for i in 0..<n { d[i] = D(fromInt64: s[i].int64Value) }
        } else {
            for i in 0..<n { d[i] = D(fromDouble: s[i].doubleValue) }
        }
    }
}

extension Kernels {
    /// float32 → float16 bits, rounding to nearest even, branch-free so that loops vectorise
    /// (the baseline x86-64 target has no F16C, and `Float16(Float)` is a library call per
    /// element). Overflow gives ±inf, NaN a quiet NaN, tiny values float16 subnormals or ±0.
    /// After F. Giesen's `float_to_half_fast3_rtne`.
    @inline(__always) static func halfBits(fromFloatBits x: UInt32) -> UInt16 {
        let sign = x & 0x8000_0000
        let a = x ^ sign
        // Below 2^-14 the result is subnormal: adding 0.5 lets the float adder round at
        // float16's subnormal spacing (2^-24), leaving the result in the low bits.
        let denormMagic: UInt32 = ((127 - 15) + (23 - 10) + 1) << 23
        let subnormal = (Float(bitPattern: a) + Float(bitPattern: denormMagic)).bitPattern &- denormMagic
        // Normal: rebias the exponent and round the 13 dropped bits to nearest even.
        let normal = (a &+ (UInt32(bitPattern: 15 - 127) << 23) &+ 0xFFF &+ ((a >> 13) & 1)) >> 13
        let special: UInt32 = a > 0x7F80_0000 ? 0x7E00 : 0x7C00  // NaN or ±inf (also ≥ 65536)
        let bits = a >= (127 + 16) << 23 ? special : (a < 113 << 23 ? subnormal : normal)
        return UInt16(truncatingIfNeeded: bits | (sign >> 16))
    }

    /// float16 bits → float32 bits (exact), branch-free. After F. Giesen's `half_to_float`.
    @inline(__always) static func floatBits(fromHalfBits h: UInt16) -> UInt32 {
        let shiftedExponent: UInt32 = 0x7C00 << 13
        let magnitude = (UInt32(h) & 0x7FFF) << 13
        let exponent = magnitude & shiftedExponent
        let rebiased = magnitude &+ ((127 - 15) << 23)
        let special = rebiased &+ ((128 - 16) << 23)                       // inf / NaN
        let subnormal = (Float(bitPattern: rebiased &+ (1 << 23)) - Float(bitPattern: 113 << 23)).bitPattern
        let bits = exponent == shiftedExponent ? special : (exponent == 0 ? subnormal : rebiased)
        return bits | ((UInt32(h) & 0x8000) << 16)
    }

    /// float32 ↔ float16/bfloat16 (the autocast casts), in parallel, without going through Double.
    fileprivate static func convertFloat16Family(_ s: UnsafeMutableRawPointer, _ from: DType,
                                                 _ d: UnsafeMutableRawPointer, _ to: DType, count n: Int) {
        nonisolated(unsafe) let (sp, dp) = (s, d)
        Parallel.forRanges(n, costPerItem: 2) { range in
            switch (from, to) {
            case (.float32, .bfloat16):
                let x = sp.assumingMemoryBound(to: Float.self), y = dp.assumingMemoryBound(to: BFloat16.self)
                for i in range { y[i] = BFloat16(x[i]) }
            case (.bfloat16, .float32):
                let x = sp.assumingMemoryBound(to: UInt16.self), y = dp.assumingMemoryBound(to: UInt32.self)
                for i in range { y[i] = UInt32(x[i]) << 16 }
            case (.float32, .float16):
                let x = sp.assumingMemoryBound(to: UInt32.self), y = dp.assumingMemoryBound(to: UInt16.self)
                for i in range { y[i] = halfBits(fromFloatBits: x[i]) }
            case (.float16, .float32):
                let x = sp.assumingMemoryBound(to: UInt16.self), y = dp.assumingMemoryBound(to: UInt32.self)
                for i in range { y[i] = floatBits(fromHalfBits: x[i]) }
            default:
                preconditionFailure("convertFloat16Family: \(from) → \(to)")
            }
        }
    }
}

extension Tensor {
    /// True when the elements fill `count` consecutive storage slots in some dimension order
    /// (a permuted contiguous tensor): no broadcasting, no gaps.
    var isDensePermutation: Bool {
        var expected = 1
        for (stride, size) in zip(strides, shape).filter({ $0.1 != 1 }).sorted(by: { $0.0 < $1.0 }) {
            if stride != expected { return false }
            expected *= size
        }
        return true
    }

    /// This tensor with row-major contiguous storage (a copy only if needed). Differentiable.
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        return Dispatch.record(.contiguous, Kernels.contiguousCopy(self), inputs: [self])
    }

    /// This tensor converted to `dtype` (round to nearest even for narrowing float conversions,
    /// truncation toward zero for float to integer). Differentiable between float types.
    /// The result is contiguous, except that a permutation of contiguous memory (e.g. `x.t()`)
    /// keeps its strides.
    public func to(_ dtype: DType) -> Tensor {
        if dtype == self.dtype { return self }
        let out: Tensor
        if !isContiguous, isDensePermutation {
            // A permuted contiguous tensor (a transposed weight, say) keeps its strides, so the
            // conversion runs in storage order instead of transposing.
            let flat = Kernels.convert(restrided(shape: [count], strides: [1], offset: offset), to: dtype)
            out = flat.restrided(shape: shape, strides: strides, offset: 0)
        } else {
            out = Kernels.convert(self, to: dtype)
        }
        guard dtype.isFloatingPoint, self.dtype.isFloatingPoint else { return out }
        return Dispatch.record(.to, out, inputs: [self])
    }
}

extension Tensor {
    /// Writes `source` (same shape) into the elements this view addresses. Kernel-level:
    /// the caller owns the storage (no copy-on-write check).
    mutating func assign(from source: Tensor) throws {
        guard source.shape == shape, source.dtype == dtype else {
            throw TensorError.shapeMismatch(op: "assign", message: "\(source.shape) \(source.dtype) into \(shape) \(dtype)")
        }
        let loop = StridedLoop(shape: shape, strides: [strides, source.strides])
        let di = loop.innerStride(0), si = loop.innerStride(1)
        func copy<T>(_: T.Type) {
            nonisolated(unsafe) let d = elementPointer(T.self), s = source.elementPointer(T.self)
            loop.parallelForEachRun { o0, o1, _, n in
                for i in 0..<n { d[o0 + i * di] = s[o1 + i * si] }
            }
        }
        switch dtype.byteSize {
        case 8: copy(UInt64.self)
        case 4: copy(UInt32.self)
        case 2: copy(UInt16.self)
        default: copy(UInt8.self)
        }
    }
}
