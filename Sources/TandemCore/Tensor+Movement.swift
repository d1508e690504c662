/// Views and layout ops. Views share storage for reading; gradients flow through all of them.
extension Tensor {
    /// The same elements with a new shape; one dimension may be -1 (inferred).
    /// A view when the strides allow it, a copy otherwise (`reshape` in PyTorch).
    public func reshape(_ newShape: [Int]) throws -> Tensor {
        let target = try inferShape(newShape, op: "reshape")
        if target == shape { return self }
        let base = isContiguous ? self : Kernels.contiguousCopy(self)
        let out = base.restrided(shape: target, strides: Shape.contiguousStrides(target), offset: base.offset)
        return Dispatch.record(.reshape, out, inputs: [self])
    }

    /// Like `reshape`, but fails instead of copying when the tensor is not contiguous.
    public func view(_ newShape: [Int]) throws -> Tensor {
        guard isContiguous else {
            throw TensorError.invalidArgument(op: "view", message: "tensor of shape \(shape) with strides \(strides) is not contiguous; use reshape(_:) or contiguous() first")
        }
        return try reshape(newShape)
    }

    func inferShape(_ newShape: [Int], op: String) throws -> [Int] {
        var target = newShape
        let unknown = newShape.indices.filter { newShape[$0] == -1 }
        guard unknown.count <= 1, newShape.allSatisfy({ $0 >= -1 }) else {
            throw TensorError.invalidArgument(op: op, message: "shape \(newShape) may hold at most one -1 and no other negative size")
        }
        let known = newShape.filter { $0 != -1 }.reduce(1, *)
        if let u = unknown.first {
            guard known > 0, count % known == 0 else {
                throw TensorError.shapeMismatch(op: op, message: "cannot reshape \(shape) (\(count) elements) into \(newShape)")
            }
            target[u] = count / known
        }
        guard Shape.count(target) == count else {
            throw TensorError.shapeMismatch(op: op, message: "cannot reshape \(shape) (\(count) elements) into \(newShape)")
        }
        return target
    }

    /// Flattens dimensions `start...end` into one.
    public func flatten(start: Int = 0, end: Int = -1) throws -> Tensor {
        if rank == 0 { return try reshape([1]) }
        let s = try Shape.normalizeAxis(start, rank: rank, op: "flatten")
        let e = try Shape.normalizeAxis(end, rank: rank, op: "flatten")
        guard s <= e else { throw TensorError.invalidArgument(op: "flatten", message: "start \(start) is after end \(end)") }
        return try reshape(Array(shape[..<s]) + [shape[s...e].reduce(1, *)] + Array(shape[(e + 1)...]))
    }

    /// Reorders dimensions: output dimension i is input dimension `order[i]`.
    public func permute(_ order: [Int]) throws -> Tensor {
        guard order.count == rank else {
            throw TensorError.invalidArgument(op: "permute", message: "order \(order) has \(order.count) entries for a tensor of rank \(rank)")
        }
        let axes = try order.map { try Shape.normalizeAxis($0, rank: rank, op: "permute") }
        guard Set(axes).count == rank else {
            throw TensorError.invalidArgument(op: "permute", message: "order \(order) is not a permutation of 0..<\(rank)")
        }
        let out = restrided(shape: axes.map { shape[$0] }, strides: axes.map { strides[$0] }, offset: offset)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in axes.enumerated() { inverse[a] = i }
        return Dispatch.record(.permute, out, inputs: [self], ints: inverse)
    }

    /// Swaps two dimensions.
    public func transpose(_ a: Int, _ b: Int) throws -> Tensor {
        var order = Array(0..<rank)
        let i = try Shape.normalizeAxis(a, rank: rank, op: "transpose")
        let j = try Shape.normalizeAxis(b, rank: rank, op: "transpose")
        order.swapAt(i, j)
        return try permute(order)
    }

    /// The transpose of a 2-D tensor.
    public func t() throws -> Tensor {
        guard rank == 2 else { throw TensorError.invalidArgument(op: "t", message: "needs a 2-D tensor, got shape \(shape)") }
        return try transpose(0, 1)
    }

    /// Removes size-1 dimensions (all of them, or the one at `axis`).
    public func squeeze(_ axis: Int? = nil) throws -> Tensor {
        var newShape = shape
        if let axis {
            let a = try Shape.normalizeAxis(axis, rank: rank, op: "squeeze")
            if shape[a] == 1 { newShape.remove(at: a) }
        } else {
            newShape.removeAll { $0 == 1 }
        }
        return try reshape(newShape)
    }

    /// Inserts a size-1 dimension at `axis` (which may be `rank`).
    public func unsqueeze(_ axis: Int) throws -> Tensor {
        let a = try Shape.normalizeAxis(axis, rank: rank + 1, op: "unsqueeze")
        var newShape = shape
        newShape.insert(1, at: a)
        return try reshape(newShape)
    }

    /// Broadcasts size-1 dimensions to `newShape` without copying (stride 0). -1 keeps a size.
    public func expand(_ newShape: [Int]) throws -> Tensor {
        guard newShape.count >= rank else {
            throw TensorError.shapeMismatch(op: "expand", message: "cannot expand \(shape) to fewer dimensions \(newShape)")
        }
        let lead = newShape.count - rank
        var outShape = newShape, outStrides = [Int](repeating: 0, count: newShape.count)
        for i in 0..<newShape.count {
            guard i >= lead else { continue }
            let size = shape[i - lead]
            if newShape[i] == -1 || newShape[i] == size {
                outShape[i] = size
                outStrides[i] = strides[i - lead]
            } else if size != 1 {
                throw TensorError.shapeMismatch(op: "expand", message: "cannot expand \(shape) to \(newShape): dimension \(i) has size \(size)")
            }
        }
        let out = restrided(shape: outShape, strides: outStrides, offset: offset)
        return Dispatch.record(.expand, out, inputs: [self])
    }

    /// Elements `start..<end` by `step` along `axis` (Python's `x[..., start:end:step]`).
    /// Negative start/end count from the end; out-of-range bounds are clipped.
    public func slice(axis: Int, start: Int = 0, end: Int? = nil, step: Int = 1) throws -> Tensor {
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "slice")
        guard step > 0 else { throw TensorError.invalidArgument(op: "slice", message: "step must be positive, got \(step)") }
        let n = shape[a]
        func clip(_ v: Int) -> Int { Swift.min(Swift.max(v < 0 ? v + n : v, 0), n) }
        let lo = clip(start), hi = clip(end ?? n)
        let length = hi > lo ? (hi - lo + step - 1) / step : 0
        var newShape = shape, newStrides = strides
        newShape[a] = length
        newStrides[a] = strides[a] * step
        let out = restrided(shape: newShape, strides: newStrides, offset: offset + lo * strides[a])
        return Dispatch.record(.slice, out, inputs: [self], axes: [a], ints: [lo, step])
    }

    /// `length` elements from `start` along `axis`.
    public func narrow(axis: Int, start: Int, length: Int) throws -> Tensor {
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "narrow")
        guard start >= 0, length >= 0, start + length <= shape[a] else {
            throw TensorError.invalidArgument(op: "narrow", message: "start \(start) + length \(length) exceeds size \(shape[a]) of axis \(axis)")
        }
        return try slice(axis: a, start: start, end: start + length)
    }

    /// The sub-tensor at `index` along axis 0 (rank drops by one).
    public subscript(index: Int) -> Tensor {
        get throws {
            guard rank > 0, index >= -shape[0], index < shape[0] else {
                throw TensorError.invalidArgument(op: "subscript", message: "index \(index) out of range for shape \(shape)")
            }
            let i = index < 0 ? index + shape[0] : index
            return try slice(axis: 0, start: i, end: i + 1).squeeze(0)
        }
    }

    /// A zero tensor of `shape` with `g` written into the strided slice (gradient of `slice`).
    static func scatterSlice(_ g: Tensor, into shape: [Int], dtype: DType, axis: Int, start: Int, step: Int) throws -> Tensor {
        let out = Tensor.zeros(shape, dtype: dtype)
        var strides = out.strides
        strides[axis] *= step
        var view = out.restrided(shape: g.shape, strides: strides, offset: start * out.strides[axis])
        try view.assign(from: g)
        return out
    }
}
