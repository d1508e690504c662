/// Reductions. `axes: nil` reduces over every axis; `keepDim` keeps reduced axes as size 1.
extension Tensor {
    private func reducedShape(_ axes: [Int], keepDim: Bool) -> [Int] {
        keepDim ? shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
                : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
    }

    /// Sum over `axes`.
    public func sum(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        try Dispatch.run(.sum, self) { x in
            try Kernels.requireFloat(x, "sum")
            let ax = try Shape.normalizeAxes(axes, rank: x.rank, op: "sum")
            let kept = ax.isEmpty ? x : Kernels.reduce(x, axes: ax, kind: .sum)
            let out = keepDim ? kept : kept.restrided(shape: x.reducedShape(ax, keepDim: false),
                                                     strides: Shape.contiguousStrides(x.reducedShape(ax, keepDim: false)), offset: 0)
            return Dispatch.record(.sum, out, inputs: [x], shape: x.reducedShape(ax, keepDim: true))
        }
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
        try Dispatch.run(.amax, self) { try $0.extremum(axes: axes, keepDim: keepDim, kind: .max, op: .amax) }
    }

    /// Minimum over `axes` (`amin`); ties share the gradient equally.
    public func amin(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        try Dispatch.run(.amin, self) { try $0.extremum(axes: axes, keepDim: keepDim, kind: .min, op: .amin) }
    }

    private func extremum(axes: [Int]?, keepDim: Bool, kind: ReduceKind, op: Op) throws -> Tensor {
        try Kernels.requireFloat(self, op.rawValue)
        guard count > 0 else { throw TensorError.invalidArgument(op: op.rawValue, message: "cannot reduce an empty tensor") }
        let ax = try Shape.normalizeAxes(axes, rank: rank, op: op.rawValue)
        let kept = ax.isEmpty ? self : Kernels.reduce(self, axes: ax, kind: kind)
        let outShape = reducedShape(ax, keepDim: keepDim)
        let out = kept.restrided(shape: outShape, strides: Shape.contiguousStrides(outShape), offset: 0)
        return Dispatch.record(op, out, inputs: [self], axes: ax, tensors: [kept.detach()])
    }

    /// Maximum along one axis with the index of the first maximum (int64).
    public func max(axis: Int, keepDim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        try argExtremum(axis: axis, keepDim: keepDim, wantMax: true, op: .max)
    }

    /// Minimum along one axis with the index of the first minimum (int64).
    public func min(axis: Int, keepDim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        try argExtremum(axis: axis, keepDim: keepDim, wantMax: false, op: .min)
    }

    /// Index of the maximum along `axis` (int64).
    public func argmax(axis: Int, keepDim: Bool = false) throws -> Tensor { try max(axis: axis, keepDim: keepDim).indices }

    /// Index of the minimum along `axis` (int64).
    public func argmin(axis: Int, keepDim: Bool = false) throws -> Tensor { try min(axis: axis, keepDim: keepDim).indices }

    private func argExtremum(axis: Int, keepDim: Bool, wantMax: Bool, op: Op) throws -> (values: Tensor, indices: Tensor) {
        var indices = Tensor.zeros([0], dtype: .int64)
        let values = try Dispatch.run(op, self) { x in
            try Kernels.requireFloat(x, op.rawValue)
            let a = try Shape.normalizeAxis(axis, rank: x.rank, op: op.rawValue)
            guard x.rank == 0 || x.shape[a] > 0 else {
                throw TensorError.invalidArgument(op: op.rawValue, message: "axis \(axis) of \(x.shape) is empty")
            }
            var keptShape = x.shape
            if x.rank > 0 { keptShape[a] = 1 }
            let (best, index) = Kernels.argExtremum(try x.movedToLast(a), keptShape: keptShape, wantMax: wantMax)
            let outShape = keepDim ? keptShape : x.shape.enumerated().filter { $0.offset != a }.map(\.element)
            indices = try index.reshape(outShape)
            let vals = best.restrided(shape: outShape, strides: Shape.contiguousStrides(outShape), offset: 0)
            return Dispatch.record(op, vals, inputs: [x], axes: [a], shape: keptShape, tensors: [index])
        }
        return (values, indices)
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
        try Dispatch.run(.prod, self) { try $0.product(axes: axes, keepDim: keepDim) }
    }

    private func product(axes: [Int]?, keepDim: Bool) throws -> Tensor {
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
        return Dispatch.record(.prod, out, inputs: [self], ints: inverse, shape: permutedShape, tensors: [others])
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
        case .float32, .float64: return Kernels.allFinite(self)
        case .float16, .bfloat16: return detach().to(.float32).isAllFinite()
        case .int32, .int64, .uint8, .bool: return true
        }
    }

    /// Σ x² over every element, accumulated in float64 (no gradient): a gradient norm without
    /// temporaries. Integer and boolean tensors give their values' squares too.
    public func squaredNorm() -> Double {
        switch dtype {
        case .float32, .float64: return Kernels.sumOfSquares(self)
        default: return Kernels.sumOfSquares(detach().to(.float64))
        }
    }

    /// Non-finite elements replaced by `value` (no gradient).
    func replacingNonFinite(with value: Double) throws -> Tensor { Kernels.replacingNonFinite(self, with: value) }
}
