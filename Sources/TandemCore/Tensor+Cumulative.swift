/// Scans along one axis.
extension Tensor {
    /// Running sum along `axis`.
    public func cumsum(axis: Int) throws -> Tensor {
        try Dispatch.run(.cumsum, self) { x in
            try Kernels.requireFloat(x, "cumsum")
            let a = try Shape.normalizeAxis(axis, rank: x.rank, op: "cumsum")
            return Dispatch.record(.cumsum, try x.scan(axis: a, product: false, exclusive: false, reverse: false), inputs: [x], axes: [a])
        }
    }

    /// Running product along `axis`. The gradient is exact where elements are zero.
    public func cumprod(axis: Int) throws -> Tensor {
        try Dispatch.run(.cumprod, self) { x in
            try Kernels.requireFloat(x, "cumprod")
            let a = try Shape.normalizeAxis(axis, rank: x.rank, op: "cumprod")
            return Dispatch.record(.cumprod, try x.scan(axis: a, product: true, exclusive: false, reverse: false), inputs: [x], axes: [a])
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
        let out = Kernels.scanRows(try movedToLast(a), product: product, exclusive: exclusive, reverse: reverse)
        return try out.movedBack(from: a, shape: shape)
    }

    /// Exclusive/reversed product scan used by `prod` (no autograd).
    func cumprod(axis: Int, exclusive: Bool, reverse: Bool) throws -> Tensor {
        try scan(axis: try Shape.normalizeAxis(axis, rank: rank, op: "cumprod"), product: true, exclusive: exclusive, reverse: reverse)
    }
}
