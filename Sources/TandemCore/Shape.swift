/// Shape arithmetic shared by all ops: element counts, strides, broadcasting, axis normalisation.
enum Shape {
    /// Number of elements of a shape (1 for a scalar `[]`).
    static func count(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// The number of elements of `shape`, or nil when a size is negative or the product does
    /// not fit in an `Int` (shapes read from files are checked with this before any use).
    static func checkedCount(_ shape: [Int]) -> Int? {
        var total = 1
        for size in shape {
            guard size >= 0 else { return nil }
            let (product, overflow) = total.multipliedReportingOverflow(by: size)
            guard !overflow else { return nil }
            total = product
        }
        return total
    }

    /// Row-major (C-contiguous) strides, in elements.
    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = running
            running *= max(shape[i], 1)
        }
        return strides
    }

    /// NumPy broadcasting of two shapes.
    static func broadcast(_ a: [Int], _ b: [Int], op: String) throws -> [Int] {
        let rank = max(a.count, b.count)
        var result = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 {
                result[i] = da
            } else if da == 1 {
                result[i] = db
            } else {
                throw TensorError.shapeMismatch(
                    op: op, message: "shapes \(a) and \(b) cannot be broadcast (dimension \(i): \(da) vs \(db))")
            }
        }
        return result
    }

    /// Maps a possibly negative axis into `0..<rank`.
    static func normalizeAxis(_ axis: Int, rank: Int, op: String) throws -> Int {
        let r = max(rank, 1)
        let a = axis < 0 ? axis + r : axis
        guard a >= 0, a < r else {
            throw TensorError.invalidArgument(op: op, message: "axis \(axis) is out of range for a tensor of rank \(rank)")
        }
        return a
    }

    /// Normalises a list of axes; `nil` or empty means all axes. Result is sorted and unique.
    static func normalizeAxes(_ axes: [Int]?, rank: Int, op: String) throws -> [Int] {
        guard let axes, !axes.isEmpty else { return Array(0..<rank) }
        var seen = Set<Int>()
        for axis in axes {
            let a = try normalizeAxis(axis, rank: rank, op: op)
            guard seen.insert(a).inserted else {
                throw TensorError.invalidArgument(op: op, message: "axis \(axis) is repeated in \(axes)")
            }
        }
        return seen.sorted()
    }
}
