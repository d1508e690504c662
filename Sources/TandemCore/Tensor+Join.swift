/// Joining and splitting: cat, stack, split, chunk, pad.
extension Tensor {
    /// Concatenates tensors along `axis`; all other dimensions must match.
    public static func cat(_ tensors: [Tensor], axis: Int = 0) throws -> Tensor {
        guard let first = tensors.first else {
            throw TensorError.invalidArgument(op: "cat", message: "needs at least one tensor")
        }
        let a = try Shape.normalizeAxis(axis, rank: first.rank, op: "cat")
        for t in tensors {
            guard t.rank == first.rank, t.dtype == first.dtype,
                  (0..<t.rank).allSatisfy({ $0 == a || t.shape[$0] == first.shape[$0] }) else {
                throw TensorError.shapeMismatch(op: "cat", message: "\(t.shape) \(t.dtype) does not fit \(first.shape) \(first.dtype) along axis \(axis)")
            }
        }
        var outShape = first.shape
        outShape[a] = tensors.reduce(0) { $0 + $1.shape[a] }
        let out = Tensor(uninitializedShape: outShape, dtype: first.dtype)
        var start = 0
        var starts: [Int] = []
        for t in tensors {
            starts.append(start)
            var view = out.restrided(shape: t.shape, strides: out.strides, offset: start * out.strides[a])
            try view.assign(from: t)
            start += t.shape[a]
        }
        return Dispatch.record(.cat, out, inputs: tensors, axes: [a], ints: starts)
    }

    /// Stacks equally shaped tensors along a new axis.
    public static func stack(_ tensors: [Tensor], axis: Int = 0) throws -> Tensor {
        guard let first = tensors.first else {
            throw TensorError.invalidArgument(op: "stack", message: "needs at least one tensor")
        }
        let a = try Shape.normalizeAxis(axis, rank: first.rank + 1, op: "stack")
        for t in tensors where t.shape != first.shape {
            throw TensorError.shapeMismatch(op: "stack", message: "\(t.shape) differs from \(first.shape)")
        }
        return try cat(tensors.map { try $0.unsqueeze(a) }, axis: a)
    }

    /// Splits along `axis` into pieces of `sizes` (which must add up to the axis size).
    public func split(sizes: [Int], axis: Int = 0) throws -> [Tensor] {
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "split")
        guard sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == shape[a] else {
            throw TensorError.invalidArgument(op: "split", message: "sizes \(sizes) do not add up to \(shape[a]) (axis \(axis) of \(shape))")
        }
        var start = 0
        return try sizes.map { size in
            defer { start += size }
            return try narrow(axis: a, start: start, length: size)
        }
    }

    /// Splits along `axis` into pieces of `size` (the last may be smaller).
    public func split(size: Int, axis: Int = 0) throws -> [Tensor] {
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "split")
        guard size > 0 else { throw TensorError.invalidArgument(op: "split", message: "size must be positive, got \(size)") }
        let n = shape[a]
        return try split(sizes: stride(from: 0, to: n, by: size).map { Swift.min(size, n - $0) }, axis: a)
    }

    /// Splits into `chunks` pieces of size ceil(n / chunks) (fewer if n is small), like PyTorch.
    public func chunk(_ chunks: Int, axis: Int = 0) throws -> [Tensor] {
        guard chunks > 0 else { throw TensorError.invalidArgument(op: "chunk", message: "chunks must be positive, got \(chunks)") }
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "chunk")
        return try split(size: Swift.max(1, (shape[a] + chunks - 1) / chunks), axis: a)
    }

    /// Constant padding. `pads` lists (before, after) pairs starting from the LAST dimension,
    /// as in `F.pad`: `[left, right, top, bottom]` pads the last two dimensions.
    public func pad(_ pads: [Int], value: Double = 0) throws -> Tensor {
        guard pads.count % 2 == 0, pads.count / 2 <= rank, pads.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.invalidArgument(op: "pad", message: "pads \(pads) must be non-negative (before, after) pairs for at most \(rank) dimensions")
        }
        var outShape = shape
        var before = [Int](repeating: 0, count: rank)
        for k in 0..<(pads.count / 2) {
            let axis = rank - 1 - k
            before[axis] = pads[2 * k]
            outShape[axis] += pads[2 * k] + pads[2 * k + 1]
        }
        let out = Tensor.full(outShape, value, dtype: dtype)
        let start = zip(before, out.strides).reduce(0) { $0 + $1.0 * $1.1 }
        var view = out.restrided(shape: shape, strides: out.strides, offset: start)
        try view.assign(from: self)
        return Dispatch.record(.pad, out, inputs: [self], ints: before)
    }
}
