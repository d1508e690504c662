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
                let x = sp.assumingMemoryBound(to: Float.self), y = dp.assumingMemoryBound(to: Float16.self)
                for i in range { y[i] = Float16(x[i]) }
            case (.float16, .float32):
                let x = sp.assumingMemoryBound(to: Float16.self), y = dp.assumingMemoryBound(to: Float.self)
                for i in range { y[i] = Float(x[i]) }
            default:
                preconditionFailure("convertFloat16Family: \(from) → \(to)")
            }
        }
    }
}

extension Tensor {
    /// This tensor with row-major contiguous storage (a copy only if needed). Differentiable.
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        return Tensor.record("contiguous", Kernels.contiguousCopy(self), inputs: [self]) { g in [g] }
    }

    /// This tensor converted to `dtype` (round to nearest even for narrowing float conversions,
    /// truncation toward zero for float to integer). Differentiable between float types.
    public func to(_ dtype: DType) -> Tensor {
        if dtype == self.dtype { return self }
        let out = Kernels.convert(self, to: dtype)
        guard dtype.isFloatingPoint, self.dtype.isFloatingPoint else { return out }
        let source = self.dtype
        return Tensor.record("to", out, inputs: [self]) { g in [g.to(source)] }
    }
}
