/// Iteration over up to three strided operands of one shape, in runs along the innermost
/// (coalesced) dimension. Kernels write their inner loop once over (offsets, count, strides).
struct StridedLoop {
    /// Shape after dropping size-1 dimensions and merging dimensions that are contiguous
    /// for every operand.
    let shape: [Int]
    let strides: [[Int]]

    init(shape: [Int], strides operandStrides: [[Int]]) {
        var dims: [(size: Int, strides: [Int])] = []
        for axis in 0..<shape.count where shape[axis] != 1 {
            dims.append((shape[axis], operandStrides.map { $0[axis] }))
        }
        var merged: [(size: Int, strides: [Int])] = []
        for dim in dims {
            if let last = merged.last,
               zip(last.strides, dim.strides).allSatisfy({ $0.0 == $0.1 * dim.size }) {
                merged[merged.count - 1] = (last.size * dim.size, dim.strides)
            } else {
                merged.append(dim)
            }
        }
        if merged.isEmpty { merged = [(1, operandStrides.map { _ in 0 })] }
        self.shape = merged.map(\.size)
        self.strides = (0..<operandStrides.count).map { k in merged.map { $0.strides[k] } }
    }

    var innerCount: Int { shape[shape.count - 1] }
    var outerCount: Int { Shape.count(Array(shape.dropLast())) }
    func innerStride(_ operand: Int) -> Int { strides[operand][shape.count - 1] }

    /// Calls `body(offsets, n, innerStrides)` for outer rows `rows` (a range of the flattened
    /// outer index). Offsets are relative to each operand's base.
    func forEachRun(rows: Range<Int>, _ body: (_ o0: Int, _ o1: Int, _ o2: Int, _ n: Int) -> Void) {
        let outerRank = shape.count - 1
        let ops = strides.count
        var index = [Int](repeating: 0, count: max(outerRank, 1))
        var offsets = [0, 0, 0]
        // Decode the first row into a multi-index.
        var rest = rows.lowerBound
        for axis in stride(from: outerRank - 1, through: 0, by: -1) {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
            for k in 0..<ops { offsets[k] += index[axis] * strides[k][axis] }
        }
        let n = innerCount
        for _ in rows {
            body(offsets[0], ops > 1 ? offsets[1] : 0, ops > 2 ? offsets[2] : 0, n)
            // Increment the multi-index.
            var axis = outerRank - 1
            while axis >= 0 {
                index[axis] += 1
                for k in 0..<ops { offsets[k] += strides[k][axis] }
                if index[axis] < shape[axis] { break }
                for k in 0..<ops { offsets[k] -= strides[k][axis] * shape[axis] }
                index[axis] = 0
                axis -= 1
            }
        }
    }

    /// Runs `body` over every run, splitting rows (or, for a single row, the run itself)
    /// across threads. Each run must write only its own elements.
    func parallelForEachRun(costPerElement: Int = 1, _ body: (_ o0: Int, _ o1: Int, _ o2: Int, _ n: Int) -> Void) {
        let rows = outerCount
        let n = innerCount
        if rows == 1 {
            let s = (0..<strides.count).map { innerStride($0) } + [0, 0]
            Parallel.forRanges(n, costPerItem: costPerElement) { range in
                body(range.lowerBound * s[0], range.lowerBound * s[1], range.lowerBound * s[2], range.count)
            }
        } else {
            Parallel.forRanges(rows, costPerItem: n * costPerElement) { range in
                forEachRun(rows: range, body)
            }
        }
    }
}
