/// Scans along one axis.
extension Tensor {
    /// Running sum along `axis`.
    public func cumsum(axis: Int) throws -> Tensor {
        if dtype.isLowPrecision { return try widened().cumsum(axis: axis) }
        try Kernels.requireFloat(self, "cumsum")
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "cumsum")
        let out = try scan(axis: a, product: false, exclusive: false, reverse: false)
        return Tensor.record("cumsum", out, inputs: [self]) { g in
            [try g.detach().scan(axis: a, product: false, exclusive: false, reverse: true)]
        }
    }

    /// Running product along `axis`. The gradient is exact where elements are zero.
    public func cumprod(axis: Int) throws -> Tensor {
        if dtype.isLowPrecision { return try widened().cumprod(axis: axis) }
        try Kernels.requireFloat(self, "cumprod")
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "cumprod")
        let out = try scan(axis: a, product: true, exclusive: false, reverse: false)
        let input = detach()
        return Tensor.record("cumprod", out, inputs: [self]) { g in
            // d out_j / d x_i = prod_{k<=j, k≠i} x_k for j >= i; O(n²) per row, exact with zeros.
            let x = try input.movedToLast(a).to(.float64)
            let gl = try g.movedToLast(a).to(.float64)
            let n = rank == 0 ? 1 : input.shape[a]
            var grad = Tensor.zeros(x.shape, dtype: .float64)
            let xp = x.elementPointer(Double.self), gp = gl.elementPointer(Double.self)
            // `x` and `gl` are not used after the loop starts: keep them alive while it reads them.
            withExtendedLifetime((x, gl)) {
                grad.withUnsafeMutableElements(Double.self) { d in
                    for r in 0..<(x.count / Swift.max(n, 1)) {
                        let base = r * n
                        for i in 0..<n {
                            var partial = 1.0
                            for k in 0..<i { partial *= xp[base + k] }
                            var total = 0.0
                            for j in i..<n {
                                if j > i { partial *= xp[base + j] }
                                total += gp[base + j] * partial
                            }
                            d[base + i] = total
                        }
                    }
                }
            }
            return [try grad.to(input.dtype).movedBack(from: a, shape: input.shape)]
        }
    }

    /// The inverse of `movedToLast`: a tensor laid out with `axis` last, put back.
    func movedBack(from axis: Int, shape original: [Int]) throws -> Tensor {
        if rank == 0 || axis == rank - 1 { return self }
        var order = Array(0..<rank)
        order.remove(at: axis)
        order.append(axis)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in order.enumerated() { inverse[a] = i }
        return try permute(inverse).contiguous()
    }

    /// Inclusive or exclusive scan (sum or product), forward or reversed, without autograd.
    func scan(axis a: Int, product: Bool, exclusive: Bool, reverse: Bool) throws -> Tensor {
        let rows = try movedToLast(a)
        let n = rank == 0 ? 1 : shape[a]
        let out = Tensor(uninitializedShape: rows.shape, dtype: dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let s = rows.elementPointer(T.self), d = out.elementPointer(T.self)
            Parallel.forRanges(rows.count / Swift.max(n, 1), costPerItem: n) { range in
                for r in range {
                    var acc: T = product ? 1 : 0
                    for k in 0..<n {
                        let j = r * n + (reverse ? n - 1 - k : k)
                        if exclusive { d[j] = acc }
                        acc = product ? acc * s[j] : acc + s[j]
                        if !exclusive { d[j] = acc }
                    }
                }
            }
        }
        // Kernels read `rows` through a raw pointer: keep it alive until they are done.
        withExtendedLifetime(rows) { if dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        return try out.movedBack(from: a, shape: shape)
    }

    /// Exclusive/reversed product scan used by `prod` (no autograd).
    func cumprod(axis: Int, exclusive: Bool, reverse: Bool) throws -> Tensor {
        try scan(axis: try Shape.normalizeAxis(axis, rank: rank, op: "cumprod"), product: true, exclusive: exclusive, reverse: reverse)
    }
}
