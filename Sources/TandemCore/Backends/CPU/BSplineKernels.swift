/// Fused B-spline bases (Cox–de Boor) and their derivative, one (sample, feature) pair per
/// item: only the `order + 1` bases that can be non-zero on the knot span holding x are
/// computed, in a small per-thread buffer (de Boor's triangle).
///
/// Every non-zero value is computed with the same IEEE operations, in the same order, as the
/// composed recursion `((x − t_j) / (t_{j+r} − t_j)) · B_{j,r−1} + ((t_{j+r+1} − x) /
/// (t_{j+r+1} − t_{j+1})) · B_{j+1,r−1}` (the terms it drops are exact zeros), so on knots
/// without repeats the results are bit-identical to it (up to the sign of zero). A term whose
/// knot span has zero width (repeated knots) is taken as 0, de Boor's 0/0 = 0 convention;
/// the composed recursion gives NaN there.
extension Kernels {
    /// Writes the bases `[count, C]` (C = m − order − 1) of `count = N·in` values `x` (row-major
    /// `[N, in]`) on the knots `knots [in, m]` (each row non-decreasing and finite), and, when
    /// `derivative` is given, dB/dx `[count, C]` (B-spline derivative identity; zeros for
    /// order 0). Non-finite x with order ≥ 1 gives NaN rows, as the composed recursion does.
    static func bSplineBases<T: FloatElement>(_ x: UnsafePointer<T>, knots: UnsafePointer<T>, count: Int, features: Int,
                                              knotCount m: Int, order: Int, bases: UnsafeMutablePointer<T>,
                                              derivative: UnsafeMutablePointer<T>?) {
        nonisolated(unsafe) let (xp, tp, bp, dp) = (x, knots, bases, derivative)
        let c = m - order - 1
        let cost = (order + 1) * (order + 2) * 4 + m + c
        Parallel.forRanges(count, costPerItem: cost) { range in
            // cur[q] = B_{s−r+q, r} for the triangle's current level r; prev holds level r − 1.
            var cur = UnsafeMutablePointer<T>.allocate(capacity: order + 1)
            var prev = UnsafeMutablePointer<T>.allocate(capacity: order + 1)
            defer { cur.deallocate(); prev.deallocate() }
            // One fill per range (not two small memsets per item): only order + 1 entries per row are set below.
            (bp + range.lowerBound * c).update(repeating: 0, count: range.count * c)
            dp.map { ($0 + range.lowerBound * c).update(repeating: 0, count: range.count * c) }
            var feature = range.lowerBound % features
            for item in range {
                defer { feature = feature + 1 == features ? 0 : feature + 1 }
                let xv = xp[item]
                let t = tp + feature * m
                let out = bp + item * c
                let dOut = dp.map { $0 + item * c }
                if order >= 1 && !xv.isFinite {
                    for j in 0..<c { out[j] = .nan }
                    if let dOut { for j in 0..<c { dOut[j] = .nan } }
                    continue
                }
                // The span s with t_s ≤ x < t_{s+1}: one less than the number of knots ≤ x.
                var s = -1
                for j in 0..<m { s &+= t[j] <= xv ? 1 : 0 }   // wrapping: no overflow check in the hot loop
                if s < 0 || s > m - 2 { continue }
                cur[0] = 1
                if order >= 1 {
                    for r in 1...order {
                        swap(&cur, &prev)
                        // Level r holds j in 0...m−r−2; entry q is j = s − r + q.
                        for q in 0...r {
                            let j = s - r + q
                            guard j >= 0, j <= m - r - 2 else { cur[q] = 0; continue }
                            var value: T = 0
                            var hasLeft = false
                            if q >= 1 {      // ((x − t_j) / (t_{j+r} − t_j)) · B_{j,r−1}
                                let d = t[j + r] - t[j]
                                value = d == 0 ? 0 : (xv - t[j]) / d * prev[q - 1]
                                hasLeft = true
                            }
                            if q <= r - 1 {  // ((t_{j+r+1} − x) / (t_{j+r+1} − t_{j+1})) · B_{j+1,r−1}
                                let d = t[j + r + 1] - t[j + 1]
                                let right = d == 0 ? 0 : (t[j + r + 1] - xv) / d * prev[q]
                                value = hasLeft ? value + right : right
                            }
                            cur[q] = value
                        }
                    }
                }
                for q in 0...order {
                    let j = s - order + q
                    if j >= 0 && j < c { out[j] = cur[q] }
                }
                // d/dx B_{j,k} = k·B_{j,k−1}/(t_{j+k} − t_j) − k·B_{j+1,k−1}/(t_{j+k+1} − t_{j+1}),
                // with prev[q] = B_{s−k+1+q, k−1}: each lower basis adds +a to dB_{j'} and −a to dB_{j'−1}.
                guard let dOut, order >= 1 else { continue }
                let k = T(Double(order))
                for q in 0..<order {
                    let jp = s - order + 1 + q
                    guard jp >= 0, jp <= m - order - 1 else { continue }
                    let d = t[jp + order] - t[jp]
                    let a = d == 0 ? 0 : k * prev[q] / d
                    if jp < c { dOut[jp] += a }
                    if jp >= 1 { dOut[jp - 1] -= a }
                }
            }
        }
    }

    /// `grad[e] = Σ_c upstream[e, c] · derivative[e, c]` for `count` rows of `columns` entries.
    static func rowDot<T: FloatElement>(_ upstream: UnsafePointer<T>, _ derivative: UnsafePointer<T>, count: Int,
                                        columns: Int, grad: UnsafeMutablePointer<T>) {
        nonisolated(unsafe) let (up, dp, gp) = (upstream, derivative, grad)
        Parallel.forRanges(count, costPerItem: 2 * columns) { range in
            for e in range {
                var sum: T = 0
                let u = up + e * columns, d = dp + e * columns
                for j in 0..<columns { sum += u[j] * d[j] }
                gp[e] = sum
            }
        }
    }
}

extension Kernels {
    /// The bases `[N, in, C]` of contiguous `x` `[N, in]` on contiguous `knots` `[in, M]` (same
    /// dtype, float32 or float64, non-decreasing rows), and with `keepDerivative` dB/dx too.
    static func bSplineBases(_ x: Tensor, knots: Tensor, order: Int, keepDerivative: Bool) -> (Tensor, Tensor?) {
        let (n, features, m) = (x.shape[0], x.shape[1], knots.shape[1])
        let c = m - order - 1
        let bases = Tensor(uninitializedShape: [n, features, c], dtype: x.dtype)
        let derivative = keepDerivative ? Tensor(uninitializedShape: [n, features, c], dtype: x.dtype) : nil
        func forward<T: FloatElement>(_: T.Type) {
            bSplineBases(x.elementPointer(T.self), knots: knots.elementPointer(T.self), count: n * features,
                         features: features, knotCount: m, order: order, bases: bases.elementPointer(T.self),
                         derivative: derivative?.elementPointer(T.self))
        }
        withExtendedLifetime((x, knots)) { if x.dtype == .float64 { forward(Double.self) } else { forward(Float.self) } }
        return (bases, derivative)
    }

    /// `Σ_c g[n, i, c] · dB/dx[n, i, c]`: the gradient `[N, in]` of the bases.
    static func bSplineBackward(_ state: BSplineState, gradOut g: Tensor) -> Tensor {
        let derivative = state.derivative, dtype = derivative.dtype
        let (n, features, c) = (derivative.shape[0], derivative.shape[1], derivative.shape[2])
        let upstream = (g.dtype == dtype ? g : g.to(dtype)).contiguousStorage()
        let grad = Tensor(uninitializedShape: [n, features], dtype: dtype)
        func backward<T: FloatElement>(_: T.Type) {
            rowDot(upstream.elementPointer(T.self), derivative.elementPointer(T.self), count: n * features,
                   columns: c, grad: grad.elementPointer(T.self))
        }
        withExtendedLifetime((upstream, derivative)) { if dtype == .float64 { backward(Double.self) } else { backward(Float.self) } }
        return grad
    }
}
