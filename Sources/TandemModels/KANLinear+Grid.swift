import Foundation
import TandemNN

extension KANLinear {
    /// Adapts the grid to the data (efficient-kan's `update_grid`): per input feature, knots at
    /// `gridSize + 1` sample quantiles of `x`, blended with a uniform grid over the data range
    /// (± `margin`) by `gridEps`, extended by `splineOrder` uniform steps each side; the spline
    /// coefficients are then refit by least squares so each edge keeps its function on `x`.
    /// `x [N, in]`; `gridSize` (default: the current one) may change the number of intervals.
    public func updateGrid(from x: Tensor, gridSize newSize: Int? = nil, margin: Double = 0.01) throws {
        try checkInput(x, op: "updateGrid")
        let size = newSize ?? gridSize
        guard size >= 1 else { throw TensorError.invalidArgument(op: "updateGrid", message: "gridSize must be ≥ 1, got \(size)") }
        let n = x.shape[0], values = x.to(.float64).toDoubleArray()
        var knots: [Double] = []
        for i in 0..<inFeatures {
            let sorted = (0..<n).map { values[$0 * inFeatures + i] }.sorted()
            let lo = sorted[0], hi = sorted[n - 1]
            let step = (hi - lo + 2 * margin) / Double(size)
            var row = (0...size).map { t -> Double in
                let adaptive = sorted[Int(Double(n - 1) * Double(t) / Double(size))]
                let uniform = Double(t) * step + lo - margin
                return gridEps * uniform + (1 - gridEps) * adaptive
            }
            let first = row[0], last = row[size]
            row = (0..<splineOrder).map { first - Double(splineOrder - $0) * step } + row
                + (0..<splineOrder).map { last + Double($0 + 1) * step }
            knots += row
        }
        try refit(on: x, newKnots: knots, newGridSize: size)
    }

    /// Grid extension (KAN paper §2.5): refines each feature's grid to `newGridSize` intervals
    /// over the same range (interior knots interpolated linearly in knot index, so 5 → 10 → 20
    /// subdivides every interval and the old spline space is contained in the new one; `splineOrder`
    /// extra knots each side at the width of the outermost new interval), then fits the new
    /// coefficients to the current functions on the sample `x [N, in]` by least squares. For
    /// samples inside the grid range the output is kept up to rounding; if samples fall outside,
    /// the new grid is uniform over both ranges (± `margin`) and the fit is approximate. The
    /// parameter shapes change: make a new optimizer.
    public func extendGrid(to newGridSize: Int, using x: Tensor, margin: Double = 0.01) throws {
        try checkInput(x, op: "extendGrid")
        guard newGridSize >= 1 else {
            throw TensorError.invalidArgument(op: "extendGrid", message: "newGridSize must be ≥ 1, got \(newGridSize)")
        }
        let old = grid.value.to(.float64).toDoubleArray(), m = grid.value.shape[1]
        let values = x.to(.float64).toDoubleArray(), n = x.shape[0]
        var knots: [Double] = []
        for i in 0..<inFeatures {
            var interior = Array(old[(i * m + splineOrder)...(i * m + splineOrder + gridSize)])
            let column = (0..<n).map { values[$0 * inFeatures + i] }
            let lo = column.min() ?? interior[0], hi = column.max() ?? interior[gridSize]
            if lo < interior[0] || hi > interior[gridSize] {
                // Samples outside the grid: a uniform grid over the union of both ranges (the fit
                // is then close, not exact).
                let a = Swift.min(interior[0], lo - margin), b = Swift.max(interior[gridSize], hi + margin)
                interior = (0...gridSize).map { a + (b - a) * Double($0) / Double(gridSize) }
            }
            let row = (0...newGridSize).map { t -> Double in
                let u = Double(t) * Double(gridSize) / Double(newGridSize)
                let k = Swift.min(Int(u), gridSize - 1), f = u - Double(k)
                return f == 0 ? interior[k] : interior[k] + f * (interior[k + 1] - interior[k])
            }
            let first = row[1] - row[0], last = row[newGridSize] - row[newGridSize - 1]
            knots += (0..<splineOrder).map { row[0] - Double(splineOrder - $0) * first } + row
                + (0..<splineOrder).map { row[newGridSize] + Double($0 + 1) * last }
        }
        try refit(on: x, newKnots: knots, newGridSize: newGridSize)
    }

    func checkInput(_ x: Tensor, op: String) throws {
        guard x.rank == 2, x.shape[1] == inFeatures, x.shape[0] > 0 else {
            throw TensorError.shapeMismatch(op: op, message: "expects a non-empty sample [N, \(inFeatures)], got \(x.shape)")
        }
    }

    /// Each edge's spline term on `x`: `[in, N, out]` (float64).
    func splineOutputsPerInput(_ x: Tensor) throws -> Tensor {
        try Tensor.withNoGrad {
            let x64 = x.detach().to(.float64)
            let bases = try Tensor.bSplineBases(x64, grid: grid.value.to(.float64), order: splineOrder).permute([1, 0, 2])
            let coeff = try scaledSplineWeight().detach().to(.float64).permute([1, 2, 0])   // [in, C, out]
            return try Tensor.bmm(bases.contiguous(), coeff.contiguous())
        }
    }

    /// Replaces the grid by `newKnots` (`in × (newGridSize + 2k + 1)`, row-major) and refits the
    /// coefficients to the current spline outputs on `x` (ridge-stabilised normal equations).
    func refit(on x: Tensor, newKnots: [Double], newGridSize: Int) throws {
        let target = try splineOutputsPerInput(x)                                    // [in, N, out]
        let m = newGridSize + 2 * splineOrder + 1, c = newGridSize + splineOrder
        // Knots rounded to the buffer's dtype first, so the fit sees the grid the forward pass uses.
        let newGrid = Tensor(newKnots, shape: [inFeatures, m], dtype: grid.value.dtype).to(.float64)
        let solution: [Double] = try Tensor.withNoGrad {
            let a = try Tensor.bSplineBases(x.detach().to(.float64), grid: newGrid, order: splineOrder)
                .permute([1, 0, 2]).contiguous()                                      // [in, N, C]
            let at = try a.transpose(1, 2).contiguous()
            let normal = try Tensor.bmm(at, a).toDoubleArray()                        // [in, C, C]
            let rhs = try Tensor.bmm(at, target).toDoubleArray()                      // [in, C, out]
            var out = [Double](repeating: 0, count: inFeatures * c * outFeatures)
            for i in 0..<inFeatures {
                let block = Array(normal[(i * c * c)..<((i + 1) * c * c)])
                let b = Array(rhs[(i * c * outFeatures)..<((i + 1) * c * outFeatures)])
                let s = LeastSquares.solveSymmetric(block, b, n: c, columns: outFeatures)
                for k in 0..<c { for j in 0..<outFeatures { out[(j * inFeatures + i) * c + k] = s[k * outFeatures + j] } }
            }
            return out
        }
        // spline_weight · spline_scaler must equal the fitted coefficients.
        var scaler = splineScaler.value.to(.float64).toDoubleArray()
        var weights = solution
        for e in 0..<(outFeatures * inFeatures) {
            if Swift.abs(scaler[e]) < 1e-12 { scaler[e] = 1 }
            for k in 0..<c { weights[e * c + k] /= scaler[e] }
        }
        let dtype = splineWeight.value.dtype
        grid.value = newGrid.to(grid.value.dtype)
        splineWeight.value = Tensor(weights, shape: [outFeatures, inFeatures, c], dtype: dtype).requiringGrad()
        try splineScaler.value.copyValues(from: Tensor(scaler, shape: [outFeatures, inFeatures], dtype: .float64))
        gridSize = newGridSize
    }
}

/// Small dense least-squares solves in float64 (normal equations with Cholesky).
enum LeastSquares {
    /// Solves `(A + λI) X = B` for symmetric positive semi-definite `A` (`n × n`, row-major) and
    /// `B` (`n × columns`), with a tiny ridge `λ` relative to A's diagonal so that directions
    /// without data get zero coefficients instead of a failed factorisation.
    static func solveSymmetric(_ a: [Double], _ b: [Double], n: Int, columns: Int) -> [Double] {
        var l = a
        let meanDiagonal = (0..<n).map { a[$0 * n + $0] }.reduce(0, +) / Double(Swift.max(n, 1))
        let ridge = 1e-10 * meanDiagonal + 1e-14
        for i in 0..<n { l[i * n + i] += ridge }
        // Cholesky: l = L Lᵀ, lower triangle in place.
        for j in 0..<n {
            var d = l[j * n + j]
            for k in 0..<j { d -= l[j * n + k] * l[j * n + k] }
            let pivot = d > 0 ? d.squareRoot() : 1e-300.squareRoot()
            l[j * n + j] = pivot
            for i in (j + 1)..<Swift.max(n, j + 1) {
                var s = l[i * n + j]
                for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
                l[i * n + j] = s / pivot
            }
        }
        var x = b
        for col in 0..<columns {
            for i in 0..<n {                       // forward: L y = b
                var s = x[i * columns + col]
                for k in 0..<i { s -= l[i * n + k] * x[k * columns + col] }
                x[i * columns + col] = s / l[i * n + i]
            }
            for i in stride(from: n - 1, through: 0, by: -1) {   // backward: Lᵀ x = y
                var s = x[i * columns + col]
                for k in (i + 1)..<Swift.max(n, i + 1) { s -= l[k * n + i] * x[k * columns + col] }
                x[i * columns + col] = s / l[i * n + i]
            }
        }
        return x
    }
}
