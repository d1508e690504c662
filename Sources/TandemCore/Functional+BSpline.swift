/// B-spline bases for Kolmogorov–Arnold layers (efficient-kan's `b_splines`). The fused kernel
/// is in Kernels/BSplineKernels.swift; `bSplineBasesReference` keeps the composed recursion.
extension Tensor {
    /// B-spline bases of order `order` (Cox–de Boor recursion) of every feature of `x` on its own
    /// knots: `x [N, in]`, `grid [in, M]` → `[N, in, M − order − 1]`. Order 0 uses half-open
    /// intervals `[t_j, t_{j+1})`, so the bases vanish outside `[grid[0], grid[M−1])`.
    ///
    /// A fused kernel for float32 and float64 `x` with knots non-decreasing along each row: per
    /// (sample, feature) it evaluates the `order + 1` bases of the span holding x, bit-identical
    /// to `bSplineBasesReference` (up to the sign of zero) on knots without repeats. On repeated
    /// knots a term over a zero-width span counts as 0 (de Boor's 0/0 = 0; the reference gives
    /// NaN). Other dtypes, and knots that are decreasing or not finite, use the reference.
    ///
    /// Differentiable in `x` (not in `grid`): the backward pass is `Σ_c g[n, i, c] · dB/dx[n, i, c]`
    /// with dB/dx from the derivative identity `d/dx B_{j,k} = k·B_{j,k−1}/(t_{j+k} − t_j) −
    /// k·B_{j+1,k−1}/(t_{j+k+1} − t_{j+1})` (the derivative of the recursion with constant
    /// indicators), computed in the forward pass only when `x` requires grad. Order 0 is
    /// piecewise constant and, like the reference, not connected to the graph. First-order
    /// gradients only (the backward is not itself differentiable).
    /// - Throws: `TensorError` for shapes other than `[N, in]` and `[in, M]`, a negative order
    ///   or fewer than `order + 2` knots.
    public static func bSplineBases(_ x: Tensor, grid: Tensor, order: Int) throws -> Tensor {
        try checkBSplineArguments(x, grid: grid, order: order)
        let dtype = x.dtype
        guard dtype.isComputeType else { return try bSplineBasesReference(x, grid: grid, order: order) }
        let (features, m) = (x.shape[1], grid.shape[1])
        let knots = grid.detach().to(dtype).contiguousStorage()
        let usable: Bool = {
            let values = knots.toDoubleArray()
            for i in 0..<features {
                for j in 0..<m where !values[i * m + j].isFinite || (j > 0 && !(values[i * m + j - 1] <= values[i * m + j])) {
                    return false
                }
            }
            return true
        }()
        guard usable else { return try bSplineBasesReference(x, grid: grid, order: order) }
        let needsGrad = GradMode.enabled && x.requiresGrad && order >= 1
        let (bases, derivative) = Kernels.bSplineBases(x.detach().contiguousStorage(), knots: knots, order: order, keepDerivative: needsGrad)
        guard let derivative else { return bases }
        return Dispatch.record(.bSplineBases, bases, inputs: [x], state: BSplineState(derivative: derivative))
    }

    /// The composed Cox–de Boor recursion behind `bSplineBases` (about 10 broadcast tensor ops
    /// per order, each with its own backward): `x [N, in]`, `grid [in, M]` → `[N, in, M − order − 1]`,
    /// differentiable in `x` (indicators have zero derivative; order 0 is not connected to the
    /// graph). Kept as the reference for tests; zero-width knot spans give NaN.
    public static func bSplineBasesReference(_ x: Tensor, grid: Tensor, order: Int) throws -> Tensor {
        try checkBSplineArguments(x, grid: grid, order: order)
        let m = grid.shape[1]
        let g = grid.detach().to(x.dtype)
        let xe = try x.unsqueeze(-1)
        func knots(_ lo: Int, _ hi: Int) throws -> Tensor { try g.slice(axis: 1, start: lo, end: hi) }
        var bases = try xe.ge(knots(0, m - 1)).to(x.dtype) * xe.lt(knots(1, m)).to(x.dtype)
        if order == 0 { return bases }
        for k in 1...order {
            let n = bases.shape[2]
            let left = try (xe - knots(0, m - k - 1)) / (knots(k, m - 1) - knots(0, m - k - 1))
                * bases.slice(axis: 2, start: 0, end: n - 1)
            let right = try (knots(k + 1, m) - xe) / (knots(k + 1, m) - knots(1, m - k))
                * bases.slice(axis: 2, start: 1, end: n)
            bases = try left + right
        }
        return bases
    }

    private static func checkBSplineArguments(_ x: Tensor, grid: Tensor, order: Int) throws {
        guard x.rank == 2, grid.rank == 2, grid.shape[0] == x.shape[1] else {
            throw TensorError.shapeMismatch(op: "bSplineBases", message: "x [N, in] and grid [in, M] expected, got \(x.shape) and \(grid.shape)")
        }
        let m = grid.shape[1]
        guard order >= 0, m >= order + 2 else {
            throw TensorError.invalidArgument(op: "bSplineBases", message: "order \(order) needs at least \(order + 2) knots, grid has \(m)")
        }
    }
}

/// What the B-spline bases keep for their gradient: dB/dx of every basis.
struct BSplineState: @unchecked Sendable {
    /// `[N, in, C]`.
    let derivative: Tensor
}
