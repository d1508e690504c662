/// A scalar function with its derivative, applied elementwise by `Kernels.map`.
/// `derivative(x:y:)` is dy/dx given the input and the output.
protocol UnaryFunction: Sendable {
    func value<T: FloatElement>(_ x: T) -> T
    func derivative<T: FloatElement>(x: T, y: T) -> T
}

/// A scalar function of two arguments.
protocol BinaryFunction: Sendable {
    func value<T: FloatElement>(_ a: T, _ b: T) -> T
}

extension Kernels {
    /// Requires a float32 or float64 tensor for `op`.
    static func requireFloat(_ t: Tensor, _ op: String) throws {
        guard t.dtype.isComputeType else {
            throw TensorError.dtypeMismatch(op: op, message: "needs float32 or float64, got \(t.dtype); convert with .to(.float32)")
        }
    }

    /// `f(x)` elementwise into a new contiguous tensor.
    static func map<F: UnaryFunction>(_ x: Tensor, _ f: F) -> Tensor {
        switch x.dtype {
        case .float64: return mapTyped(x, f, Double.self)
        default: return mapTyped(x, f, Float.self)
        }
    }

    private static func mapTyped<F: UnaryFunction, T: FloatElement>(_ x: Tensor, _ f: F, _: T.Type) -> Tensor {
        let src = x.contiguousStorage()
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        nonisolated(unsafe) let s = src.elementPointer(T.self)
        nonisolated(unsafe) let d = out.elementPointer(T.self)
        // `src` (a copy when `x` is strided) is not used after its pointer was taken.
        withExtendedLifetime(src) {
            Parallel.forRanges(x.count, costPerItem: 4) { range in
                for i in range { d[i] = f.value(s[i]) }
            }
        }
        return out
    }

    /// `upstream * f'(x)` elementwise, given the input `x` and output `y` of `f`.
    static func mapBackward<F: UnaryFunction>(_ upstream: Tensor, x: Tensor, y: Tensor, _ f: F) -> Tensor {
        switch x.dtype {
        case .float64: return mapBackwardTyped(upstream, x, y, f, Double.self)
        default: return mapBackwardTyped(upstream, x, y, f, Float.self)
        }
    }

    private static func mapBackwardTyped<F: UnaryFunction, T: FloatElement>(
        _ upstream: Tensor, _ x: Tensor, _ y: Tensor, _ f: F, _: T.Type
    ) -> Tensor {
        let g = upstream.contiguousStorage(), xc = x.contiguousStorage(), yc = y.contiguousStorage()
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        nonisolated(unsafe) let gp = g.elementPointer(T.self)
        nonisolated(unsafe) let xp = xc.elementPointer(T.self)
        nonisolated(unsafe) let yp = yc.elementPointer(T.self)
        nonisolated(unsafe) let d = out.elementPointer(T.self)
        // `g`, `xc` and `yc` (copies when strided) are not used after their pointers were taken.
        withExtendedLifetime((g, xc, yc)) {
            Parallel.forRanges(x.count, costPerItem: 4) { range in
                for i in range { d[i] = gp[i] * f.derivative(x: xp[i], y: yp[i]) }
            }
        }
        return out
    }

    /// `f(a, b)` with NumPy broadcasting into a new contiguous tensor of the broadcast shape.
    /// float16/bfloat16 operands compute in float32; the result keeps the low dtype when both
    /// operands have it and is float32 otherwise (PyTorch's type promotion).
    static func zip<F: BinaryFunction>(_ a: Tensor, _ b: Tensor, _ f: F, op: String) throws -> Tensor {
        if a.dtype.isLowPrecision || b.dtype.isLowPrecision {
            let wide = try zip(a.dtype.isLowPrecision ? convert(a, to: .float32) : a,
                               b.dtype.isLowPrecision ? convert(b, to: .float32) : b, f, op: op)
            return a.dtype == b.dtype ? convert(wide, to: a.dtype) : wide
        }
        try requireFloat(a, op)
        guard a.dtype == b.dtype else {
            throw TensorError.dtypeMismatch(op: op, message: "\(a.dtype) and \(b.dtype); convert one with .to(_:)")
        }
        let shape = try Shape.broadcast(a.shape, b.shape, op: op)
        switch a.dtype {
        case .float64: return zipTyped(a, b, shape, f, Double.self)
        default: return zipTyped(a, b, shape, f, Float.self)
        }
    }

    /// Strides of `t` viewed with the (broadcast) shape `shape`: 0 along broadcast dimensions.
    static func broadcastStrides(_ t: Tensor, to shape: [Int]) -> [Int] {
        let lead = shape.count - t.rank
        return (0..<shape.count).map { i in
            i < lead || t.shape[i - lead] == 1 ? 0 : t.strides[i - lead]
        }
    }

    private static func zipTyped<F: BinaryFunction, T: FloatElement>(
        _ a: Tensor, _ b: Tensor, _ shape: [Int], _ f: F, _: T.Type
    ) -> Tensor {
        let out = Tensor(uninitializedShape: shape, dtype: a.dtype)
        nonisolated(unsafe) let ap = a.elementPointer(T.self)
        nonisolated(unsafe) let bp = b.elementPointer(T.self)
        nonisolated(unsafe) let dp = out.elementPointer(T.self)
        let loop = StridedLoop(shape: shape, strides: [out.strides, broadcastStrides(a, to: shape), broadcastStrides(b, to: shape)])
        let sa = loop.innerStride(1), sb = loop.innerStride(2)
        loop.parallelForEachRun { o, oa, ob, n in
            let d = dp + o, x = ap + oa, y = bp + ob
            if sa == 1 && sb == 1 {
                for i in 0..<n { d[i] = f.value(x[i], y[i]) }
            } else if sa == 1 && sb == 0 {
                let v = y[0]
                for i in 0..<n { d[i] = f.value(x[i], v) }
            } else if sa == 0 && sb == 1 {
                let v = x[0]
                for i in 0..<n { d[i] = f.value(v, y[i]) }
            } else {
                for i in 0..<n { d[i] = f.value(x[i * sa], y[i * sb]) }
            }
        }
        return out
    }
}
