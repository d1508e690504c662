/// Reductions. `axes: nil` reduces over every axis; `keepDim` keeps reduced axes as size 1.
extension Tensor {
    private func reducedShape(_ axes: [Int], keepDim: Bool) -> [Int] {
        keepDim ? shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
                : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
    }

    /// Sum over `axes`.
    public func sum(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        if dtype.isLowPrecision { return try widened().sum(axes: axes, keepDim: keepDim) }
        try Kernels.requireFloat(self, "sum")
        let ax = try Shape.normalizeAxes(axes, rank: rank, op: "sum")
        let kept = ax.isEmpty ? self : Kernels.reduce(self, axes: ax, kind: .sum)
        let out = keepDim ? kept : kept.restrided(shape: reducedShape(ax, keepDim: false),
                                                 strides: Shape.contiguousStrides(reducedShape(ax, keepDim: false)), offset: 0)
        let source = shape, keptShape = reducedShape(ax, keepDim: true)
        return Tensor.record("sum", out, inputs: [self]) { g in [try g.reshape(keptShape).expand(source)] }
    }

    /// Mean over `axes`.
    public func mean(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        let ax = try Shape.normalizeAxes(axes, rank: rank, op: "mean")
        let n = ax.reduce(1) { $0 * shape[$1] }
        return try sum(axes: ax, keepDim: keepDim) / Double(Swift.max(n, 1))
    }

    /// Variance over `axes` with `correction` (1: unbiased, 0: biased), like `torch.var`.
    public func variance(axes: [Int]? = nil, correction: Int = 1, keepDim: Bool = false) throws -> Tensor {
        let ax = try Shape.normalizeAxes(axes, rank: rank, op: "var")
        let n = ax.reduce(1) { $0 * shape[$1] }
        let centered = try self - mean(axes: ax, keepDim: true)
        return try (centered * centered).sum(axes: ax, keepDim: keepDim) / Double(Swift.max(n - correction, 0))
    }

    /// Maximum over `axes` (`amax`); ties share the gradient equally.
    public func amax(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        try extremum(axes: axes, keepDim: keepDim, kind: .max, op: "amax")
    }

    /// Minimum over `axes` (`amin`); ties share the gradient equally.
    public func amin(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        try extremum(axes: axes, keepDim: keepDim, kind: .min, op: "amin")
    }

    private func extremum(axes: [Int]?, keepDim: Bool, kind: ReduceKind, op: String) throws -> Tensor {
        if dtype.isLowPrecision { return try widened().extremum(axes: axes, keepDim: keepDim, kind: kind, op: op) }
        try Kernels.requireFloat(self, op)
        guard count > 0 else { throw TensorError.invalidArgument(op: op, message: "cannot reduce an empty tensor") }
        let ax = try Shape.normalizeAxes(axes, rank: rank, op: op)
        let kept = ax.isEmpty ? self : Kernels.reduce(self, axes: ax, kind: kind)
        let outShape = reducedShape(ax, keepDim: keepDim)
        let out = kept.restrided(shape: outShape, strides: Shape.contiguousStrides(outShape), offset: 0)
        let input = self.detach(), source = shape
        return Tensor.record(op, out, inputs: [self]) { g in
            let winners = try input.eq(kept.expand(source)).to(input.dtype)
            let ties = try winners.sum(axes: ax, keepDim: true)
            return [try winners * (g.reshape(kept.shape) / ties)]
        }
    }

    /// Maximum along one axis with the index of the first maximum (int64).
    public func max(axis: Int, keepDim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        try argExtremum(axis: axis, keepDim: keepDim, wantMax: true, op: "max")
    }

    /// Minimum along one axis with the index of the first minimum (int64).
    public func min(axis: Int, keepDim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        try argExtremum(axis: axis, keepDim: keepDim, wantMax: false, op: "min")
    }

    /// Index of the maximum along `axis` (int64).
    public func argmax(axis: Int, keepDim: Bool = false) throws -> Tensor { try max(axis: axis, keepDim: keepDim).indices }

    /// Index of the minimum along `axis` (int64).
    public func argmin(axis: Int, keepDim: Bool = false) throws -> Tensor { try min(axis: axis, keepDim: keepDim).indices }

    private func argExtremum(axis: Int, keepDim: Bool, wantMax: Bool, op: String) throws -> (values: Tensor, indices: Tensor) {
        if dtype.isLowPrecision { return try widened().argExtremum(axis: axis, keepDim: keepDim, wantMax: wantMax, op: op) }
        try Kernels.requireFloat(self, op)
        let a = try Shape.normalizeAxis(axis, rank: rank, op: op)
        guard rank == 0 || shape[a] > 0 else { throw TensorError.invalidArgument(op: op, message: "axis \(axis) of \(shape) is empty") }
        let rows = try movedToLast(a)
        let n = rank == 0 ? 1 : shape[a]
        let outer = count / Swift.max(n, 1)
        var keptShape = shape
        if rank > 0 { keptShape[a] = 1 }
        let values = Tensor(uninitializedShape: keptShape, dtype: dtype)
        let indices = Tensor(uninitializedShape: keptShape, dtype: .int64)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let src = rows.elementPointer(T.self)
            nonisolated(unsafe) let v = values.elementPointer(T.self)
            nonisolated(unsafe) let ix = indices.elementPointer(Int64.self)
            Parallel.forRanges(outer, costPerItem: n) { range in
                for r in range {
                    let row = src + r * n
                    var best = row[0], bestIndex = 0
                    for j in 1..<Swift.max(n, 1) where !best.isNaN {
                        let x = row[j]
                        if x.isNaN || (wantMax ? x > best : x < best) { best = x; bestIndex = j }
                    }
                    v[r] = best
                    ix[r] = Int64(bestIndex)
                }
            }
        }
        // Kernels read `rows` through a raw pointer: keep it alive until they are done.
        withExtendedLifetime(rows) { if self.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        let outShape = keepDim ? keptShape : shape.enumerated().filter { $0.offset != a }.map(\.element)
        let idx = try indices.reshape(outShape)
        let vals = values.restrided(shape: outShape, strides: Shape.contiguousStrides(outShape), offset: 0)
        let source = shape, dtype = self.dtype
        let recorded = Tensor.record(op, vals, inputs: [self]) { g in
            [try Tensor.zeros(source, dtype: dtype).scatterAdd(axis: a, index: indices, source: g.reshape(keptShape))]
        }
        return (recorded, idx)
    }

    /// log(sum(exp(x))) over `axes`, computed stably (rows of -inf give -inf).
    public func logsumexp(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        let ax = try Shape.normalizeAxes(axes, rank: rank, op: "logsumexp")
        let m = try Tensor.withNoGrad { try amax(axes: ax, keepDim: true) }
        let shift = try Tensor.withNoGrad { try m.replacingNonFinite(with: 0) }
        var out = try (self - shift).exp().sum(axes: ax, keepDim: true).log() + shift
        if !keepDim { out = try out.reshape(reducedShape(ax, keepDim: false)) }
        return out
    }

    /// Product over `axes`. The gradient is exact even where elements are zero.
    public func prod(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        if dtype.isLowPrecision { return try widened().prod(axes: axes, keepDim: keepDim) }
        try Kernels.requireFloat(self, "prod")
        let ax = try Shape.normalizeAxes(axes, rank: rank, op: "prod")
        let keptAxes = (0..<rank).filter { !ax.contains($0) }
        let r = ax.reduce(1) { $0 * shape[$1] }
        let rows = try detach().permute(keptAxes + ax).reshape([-1, Swift.max(r, 1)]).contiguous()
        // Exclusive prefix and suffix products give prod_{j≠i} x_j without division.
        let prefix = try rows.cumprod(axis: 1, exclusive: true, reverse: false)
        let suffix = try rows.cumprod(axis: 1, exclusive: true, reverse: true)
        let others = try prefix * suffix
        let total = try (others.slice(axis: 1, start: 0, end: 1) * rows.slice(axis: 1, start: 0, end: 1))
        let keptShape = reducedShape(ax, keepDim: true)
        let out = try total.reshape(keepDim ? keptShape : reducedShape(ax, keepDim: false)).detach()
        let permutedShape = keptAxes.map { shape[$0] } + ax.map { shape[$0] }
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in (keptAxes + ax).enumerated() { inverse[a] = i }
        return Tensor.record("prod", out, inputs: [self]) { g in
            let grad = try others * g.reshape([-1, 1])
            return [try grad.reshape(permutedShape).permute(inverse).contiguous()]
        }
    }

    /// `axis` moved to the end, contiguous (for row-wise kernels).
    func movedToLast(_ axis: Int) throws -> Tensor {
        if rank == 0 || axis == rank - 1 { return contiguousStorage() }
        var order = Array(0..<rank)
        order.remove(at: axis)
        order.append(axis)
        return try detach().permute(order).contiguousStorage()
    }

    /// True when no element is inf or NaN; integer and boolean tensors always are. Any shape,
    /// no gradient.
    public func isAllFinite() -> Bool {
        switch dtype {
        case .float32:
            let c = contiguousStorage()
            return withExtendedLifetime(c) { Kernels.allFinite(UnsafePointer(c.elementPointer(Float.self)), count: c.count) }
        case .float64:
            let c = contiguousStorage()
            return withExtendedLifetime(c) { Kernels.allFinite(UnsafePointer(c.elementPointer(Double.self)), count: c.count) }
        case .float16, .bfloat16:
            return detach().to(.float32).isAllFinite()
        case .int32, .int64, .uint8, .bool:
            return true
        }
    }

    /// Non-finite elements replaced by `value` (no gradient).
    func replacingNonFinite(with value: Double) throws -> Tensor {
        let c = contiguousStorage()
        var out = Kernels.contiguousCopy(c)
        if dtype == .float64 {
            out.withUnsafeMutableElements(Double.self) { b in for i in b.indices where !b[i].isFinite { b[i] = value } }
        } else {
            out.withUnsafeMutableElements(Float.self) { b in for i in b.indices where !b[i].isFinite { b[i] = Float(value) } }
        }
        return out
    }
}
