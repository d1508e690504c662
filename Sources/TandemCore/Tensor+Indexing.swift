/// Index-based ops: indexSelect/embedding, gather, scatterAdd, oneHot, triu/tril.
extension Tensor {
    private func checkIndex(_ index: Tensor, op: String) throws -> [Int] {
        guard !index.dtype.isFloatingPoint else {
            throw TensorError.dtypeMismatch(op: op, message: "index must be an integer tensor, got \(index.dtype)")
        }
        return index.toIntArray()
    }

    /// Where element `flat` of an index tensor (contiguous strides `walk`) points, for gather
    /// and scatter-add: its coordinates with the one along `axis` replaced by `target`, as an
    /// offset with `targetStrides`, and its own coordinates as an offset with `sourceStrides`.
    /// Throws when a coordinate falls outside this tensor's shape.
    @inline(__always)
    private func indexedOffsets(_ flat: Int, walk: [Int], axis: Int, target: Int, targetStrides: [Int], sourceStrides: [Int],
                                op: String) throws -> (target: Int, source: Int) {
        var rest = flat, offset = 0, source = 0
        for k in 0..<rank {
            let coordinate = rest / walk[k]
            rest %= walk[k]
            let c = k == axis ? target : coordinate
            guard c >= 0 && c < shape[k] else {
                throw TensorError.invalidArgument(op: op, message: "index \(target) out of range 0..<\(shape[axis])")
            }
            offset += c * targetStrides[k]
            source += coordinate * sourceStrides[k]
        }
        return (offset, source)
    }

    /// Rows of this tensor picked along `axis` by a 1-D integer `index`.
    /// `[..., n, ...]` → `[..., index.count, ...]`.
    public func indexSelect(axis: Int, index: Tensor) throws -> Tensor {
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "indexSelect")
        guard index.rank <= 1 else {
            throw TensorError.shapeMismatch(op: "indexSelect", message: "index must be 1-D, got \(index.shape)")
        }
        let idx = try checkIndex(index, op: "indexSelect")
        let n = shape[a]
        if let bad = idx.first(where: { $0 < 0 || $0 >= n }) {
            throw TensorError.invalidArgument(op: "indexSelect", message: "index \(bad) out of range 0..<\(n) on axis \(axis)")
        }
        var outShape = shape
        outShape[a] = idx.count
        let out = Tensor(uninitializedShape: outShape, dtype: dtype)
        for (k, i) in idx.enumerated() {
            var dst = out.restrided(shape: { var s = shape; s[a] = 1; return s }(), strides: out.strides, offset: k * out.strides[a])
            try dst.assign(from: restrided(shape: dst.shape, strides: strides, offset: offset + i * strides[a]))
        }
        return Dispatch.record(.indexSelect, out, inputs: [self], axes: [a], shape: outShape, tensors: [index])
    }

    /// Embedding lookup: `weight [numEmbeddings, dim]`, integer `indices [...]` → `[..., dim]`.
    public static func embedding(_ indices: Tensor, weight: Tensor) throws -> Tensor {
        guard weight.rank == 2 else {
            throw TensorError.shapeMismatch(op: "embedding", message: "weight must be [numEmbeddings, dim], got \(weight.shape)")
        }
        guard weight.dtype == .float32 || weight.dtype == .float64 else {
            return try weight.indexSelect(axis: 0, index: indices.reshape([-1])).reshape(indices.shape + [weight.shape[1]])
        }
        let rows = try weight.checkIndex(indices, op: "embedding")
        let vocabulary = weight.shape[0]
        if let bad = rows.first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw TensorError.invalidArgument(op: "embedding", message: "index \(bad) out of range 0..<\(vocabulary) (the vocabulary size)")
        }
        return try Dispatch.run(.embedding, weight) { weight in
            let out = try Kernels.embeddingRows(weight.contiguousStorage(), rows).reshape(indices.shape + [weight.shape[1]])
            return Dispatch.record(.embedding, out, inputs: [weight], ints: rows)
        }
    }

    /// `out[i][j][k] = self[index[i][j][k]][j][k]` for axis 0 (and likewise for other axes).
    /// `index` has this tensor's rank; the result has `index`'s shape.
    public func gather(axis: Int, index: Tensor) throws -> Tensor {
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "gather")
        guard index.rank == rank, (0..<rank).allSatisfy({ $0 == a || index.shape[$0] <= shape[$0] }) else {
            throw TensorError.shapeMismatch(op: "gather", message: "index \(index.shape) does not fit input \(shape) on axis \(axis)")
        }
        try Kernels.requireFloat(self, "gather")
        let idx = try checkIndex(index, op: "gather")
        var out = Tensor(uninitializedShape: index.shape, dtype: dtype)
        let outStrides = out.strides, inStrides = Shape.contiguousStrides(shape)
        func run<T: FloatElement>(_: T.Type) throws {
            try withElements(T.self) { s in
                try out.withUnsafeMutableElements(T.self) { d in
                    for flat in 0..<idx.count {
                        let src = try indexedOffsets(flat, walk: outStrides, axis: a, target: idx[flat],
                                                     targetStrides: inStrides, sourceStrides: outStrides, op: "gather").target
                        d[flat] = s[src]
                    }
                }
            }
        }
        if dtype == .float64 { try run(Double.self) } else { try run(Float.self) }
        return Dispatch.record(.gather, out, inputs: [self], axes: [a], tensors: [index])
    }

    /// A copy of this tensor with `source` added at positions given by `index` along `axis`:
    /// `out[index[i][j]][j] += source[i][j]` for axis 0. `index` and `source` share a shape.
    public func scatterAdd(axis: Int, index: Tensor, source: Tensor) throws -> Tensor {
        let a = try Shape.normalizeAxis(axis, rank: rank, op: "scatterAdd")
        guard index.shape == source.shape || Shape.count(index.shape) <= Shape.count(source.shape),
              index.rank == rank, source.rank == rank, source.dtype == dtype else {
            throw TensorError.shapeMismatch(op: "scatterAdd", message: "index \(index.shape) / source \(source.shape) \(source.dtype) do not fit \(shape) \(dtype)")
        }
        try Kernels.requireFloat(self, "scatterAdd")
        let idx = try checkIndex(index, op: "scatterAdd")
        var out = Kernels.contiguousCopy(self)
        let src = source.detach().contiguousStorage()
        let indexStrides = Shape.contiguousStrides(index.shape)
        let srcStrides = src.strides
        let outStrides = out.strides
        func run<T: FloatElement>(_: T.Type) throws {
            try out.withUnsafeMutableElements(T.self) { d in
                try src.withElements(T.self) { s in
                    for flat in 0..<idx.count {
                        let (dst, from) = try indexedOffsets(flat, walk: indexStrides, axis: a, target: idx[flat],
                                                             targetStrides: outStrides, sourceStrides: srcStrides, op: "scatterAdd")
                        d[dst] += s[from]
                    }
                }
            }
        }
        if dtype == .float64 { try run(Double.self) } else { try run(Float.self) }
        return Dispatch.record(.scatterAdd, out, inputs: [self, source], axes: [a], tensors: [index])
    }

    /// One-hot encoding of an integer tensor: `[...]` → `[..., numClasses]` (dtype as given).
    public static func oneHot(_ labels: Tensor, numClasses: Int, dtype: DType = .float32) throws -> Tensor {
        guard !labels.dtype.isFloatingPoint else {
            throw TensorError.dtypeMismatch(op: "oneHot", message: "labels must be integers, got \(labels.dtype)")
        }
        let values = labels.toIntArray()
        if let bad = values.first(where: { $0 < 0 || $0 >= numClasses }) {
            throw TensorError.invalidArgument(op: "oneHot", message: "label \(bad) out of range 0..<\(numClasses)")
        }
        var flat = [Double](repeating: 0, count: values.count * numClasses)
        for (i, v) in values.enumerated() { flat[i * numClasses + v] = 1 }
        return Tensor(flat, shape: labels.shape + [numClasses], dtype: dtype)
    }

    /// The upper triangle of the last two dimensions (elements with j - i >= diagonal), zero elsewhere.
    public func triu(diagonal: Int = 0) throws -> Tensor { try triangle(diagonal: diagonal, upper: true) }

    /// The lower triangle of the last two dimensions (elements with j - i <= diagonal), zero elsewhere.
    public func tril(diagonal: Int = 0) throws -> Tensor { try triangle(diagonal: diagonal, upper: false) }

    private func triangle(diagonal: Int, upper: Bool) throws -> Tensor {
        guard rank >= 2 else {
            throw TensorError.invalidArgument(op: upper ? "triu" : "tril", message: "needs at least 2 dimensions, got \(shape)")
        }
        let rows = shape[rank - 2], cols = shape[rank - 1]
        var mask = [Double](repeating: 0, count: rows * cols)
        for i in 0..<rows {
            for j in 0..<cols where upper ? j - i >= diagonal : j - i <= diagonal { mask[i * cols + j] = 1 }
        }
        let keep = Tensor(mask, shape: [rows, cols], dtype: .bool)
        return try Tensor.where(keep, self, Tensor.zeros([], dtype: dtype))
    }
}
