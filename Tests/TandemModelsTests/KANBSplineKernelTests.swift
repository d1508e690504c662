import Foundation
import Testing
import TandemModels
import TandemNN
import TandemTestSupport

/// The fused `Tensor.bSplineBases` kernel against the composed recursion
/// (`bSplineBasesReference`): values, x-gradients, finite differences, repeated knots.
@Suite struct KANBSplineKernelTests {
    func expectClose(_ a: Tensor, _ b: Tensor, rtol: Double, atol: Double, _ label: String) {
        let m = Closeness.mismatch(a, b, rtol: rtol, atol: atol, label)
        #expect(m == nil, "\(m ?? "")")
    }

    /// Strictly increasing random knots per feature: `[features, knots]` (float64).
    func randomGrid(features: Int, knots: Int, seed: UInt64) -> [Double] {
        let gaps = Tensor.uniform([features, knots - 1], low: 0.05, high: 0.6, dtype: .float64,
                                  generator: Generator(seed: seed)).toDoubleArray()
        var grid: [Double] = []
        for i in 0..<features {
            var t = -1.5 + 0.3 * Double(i)
            grid.append(t)
            for j in 0..<(knots - 1) { t += gaps[i * (knots - 1) + j]; grid.append(t) }
        }
        return grid
    }

    /// Samples `[N, features]`: random points inside and outside the grid range, every knot
    /// exactly, and points just outside both ends.
    func samples(grid: [Double], features: Int, knots: Int, seed: UInt64) -> (values: [Double], rows: Int) {
        let random = Tensor.uniform([40, features], low: -3, high: 4, dtype: .float64, generator: Generator(seed: seed)).toDoubleArray()
        var rows = random
        for j in 0..<knots { for i in 0..<features { rows.append(grid[i * knots + j]) } }
        for i in 0..<features { rows.append(grid[i * knots] - 1e-3) }
        for i in 0..<features { rows.append(grid[i * knots + knots - 1] + 1e-3) }
        return (rows, rows.count / features)
    }

    @Test func fusedMatchesReferenceValuesAndGradients() throws {
        let features = 3
        for dtype in [DType.float32, .float64] {
            for order in 0...3 {
                for gridSize in [1, 4, 7] {
                    let m = gridSize + 2 * order + 1
                    let knots = randomGrid(features: features, knots: m, seed: UInt64(10 * order + gridSize))
                    let grid = Tensor(knots, shape: [features, m], dtype: .float64)
                    let (values, rows) = samples(grid: knots, features: features, knots: m, seed: UInt64(order + 100))
                    let label = "\(dtype) order \(order) grid \(gridSize)"
                    let upstream = Tensor.randn([rows, features, m - order - 1], dtype: dtype, generator: Generator(seed: 5))

                    let x1 = Tensor(values, shape: [rows, features], dtype: dtype).requiringGrad()
                    let fused = try Tensor.bSplineBases(x1, grid: grid, order: order)
                    try ((fused * upstream).sum() + (x1 * 0).sum()).backward()
                    let x2 = Tensor(values, shape: [rows, features], dtype: dtype).requiringGrad()
                    let reference = try Tensor.bSplineBasesReference(x2, grid: grid, order: order)
                    try ((reference * upstream).sum() + (x2 * 0).sum()).backward()

                    #expect(fused.dtype == dtype && fused.shape == reference.shape, "\(label)")
                    expectClose(fused, reference, rtol: 0, atol: 0, "\(label) values")   // bit-identical
                    let tol = dtype == .float64 ? 1e-10 : 2e-4
                    expectClose(try #require(x1.grad), try #require(x2.grad), rtol: tol, atol: tol, "\(label) grad_x")
                    if order == 0 {
                        #expect(try #require(x1.grad).toDoubleArray().allSatisfy { $0 == 0 }, "\(label)")
                    }
                }
            }
        }
    }

    @Test func gradCheckFloat64() throws {
        for order in 1...3 {
            let m = 5 + 2 * order + 1
            let grid = Tensor(randomGrid(features: 2, knots: m, seed: UInt64(order)), shape: [2, m], dtype: .float64)
            let x = Tensor.uniform([6, 2], low: -2, high: 3, dtype: .float64, generator: Generator(seed: UInt64(20 + order)))
            let result = try GradCheck.check([x]) { xs in try Tensor.bSplineBases(xs[0], grid: grid, order: order) }
            #expect(result.passed, "order \(order): \(result)")
        }
    }

    @Test func repeatedKnotsGiveFiniteBasesWithPartitionOfUnity() throws {
        // A double interior knot at 0: the reference divides 0 by 0 there (NaN).
        let knots: [Double] = [-2, -1.5, -1, -0.5, 0, 0, 0.5, 1, 1.5, 2, 2.5]
        let order = 3, m = knots.count
        let grid = Tensor(knots, shape: [1, m], dtype: .float64)
        let points = (0..<50).map { -0.5 + 1.5 * Double($0) / 50 }   // inside [t_3, t_{m−4})
        let x = Tensor(points + [0, -3, 3], shape: [53, 1], dtype: .float64).requiringGrad()
        let bases = try Tensor.bSplineBases(x, grid: grid, order: order)
        let values = bases.toDoubleArray(), c = m - order - 1
        #expect(values.allSatisfy { $0.isFinite })
        for row in 0..<51 {
            let sum = values[(row * c)..<((row + 1) * c)].reduce(0, +)
            #expect(Swift.abs(sum - 1) < 1e-12, "row \(row): \(sum)")
        }
        try bases.sum().backward()
        let grad = try #require(x.grad).toDoubleArray()
        #expect(grad.allSatisfy { $0.isFinite && Swift.abs($0) < 1e-9 }, "Σ_c dB_c/dx = 0 inside the range")
        #expect(try Tensor.bSplineBasesReference(x.detach(), grid: grid, order: order).toDoubleArray().contains { $0.isNaN })
    }

    @Test func unsortedKnotsFallBackToTheReference() throws {
        let grid = Tensor([0, 1, 0.5, 2, 3, 4], shape: [1, 6], dtype: .float32)
        let x = Tensor([0.2, 0.7, 1.2, 2.5, 3.9], shape: [5, 1], dtype: .float32)
        expectClose(try Tensor.bSplineBases(x, grid: grid, order: 2), try Tensor.bSplineBasesReference(x, grid: grid, order: 2),
                    rtol: 0, atol: 0, "unsorted")
    }

    @Test func nonFiniteInputsMatchTheReference() throws {
        let grid = Tensor((0..<12).map { Double($0) / 3 - 2 }, shape: [1, 12], dtype: .float32)
        let x = Tensor([.nan, .infinity, -.infinity, 0.1], shape: [4, 1], dtype: .float32)
        for order in 0...3 {
            expectClose(try Tensor.bSplineBases(x, grid: grid, order: order),
                        try Tensor.bSplineBasesReference(x, grid: grid, order: order), rtol: 0, atol: 0, "order \(order)")
        }
    }

    @Test func noGraphWithoutGradMode() throws {
        let grid = KANLinear(2, 1).grid.value
        let x = Tensor.uniform([3, 2], low: -1, high: 1, generator: Generator(seed: 1)).requiringGrad()
        #expect(try Tensor.bSplineBases(x, grid: grid, order: 3).requiresGrad)
        #expect(try Tensor.withNoGrad { try Tensor.bSplineBases(x, grid: grid, order: 3) }.requiresGrad == false)
    }
}
