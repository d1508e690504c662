import Testing
import TandemModels
import TandemNN
import TandemTestSupport

/// KANLinear against efficient-kan (golden file), float64 gradient checks, grid update and
/// extension, the regulariser and pruning.
@Suite struct KANTests {
    static let golden = try! Golden.load("kan")

    func expectClose(_ a: Tensor, _ b: Tensor, rtol: Double, atol: Double, _ label: String) {
        let m = Closeness.mismatch(a, b, rtol: rtol, atol: atol, label)
        #expect(m == nil, "\(m ?? "")")
    }

    func goldenLayer() throws -> KANLinear {
        let g = Self.golden
        let layer = KANLinear(3, 2)
        try layer.loadStateDict(["grid": g.tensor("grid"), "base_weight": g.tensor("base_weight"),
                                 "spline_weight": g.tensor("spline_weight"), "spline_scaler": g.tensor("spline_scaler")])
        return layer
    }

    @Test func stateDictNamesMatchEfficientKAN() {
        #expect(KANLinear(3, 2).stateDict().map(\.0) == ["base_weight", "spline_weight", "spline_scaler", "grid"])
        let names = KAN([4, 3, 2]).stateDict().map(\.0)
        #expect(names.first == "layers.0.base_weight" && names.last == "layers.1.grid")
    }

    @Test func defaultGridMatchesGolden() throws {
        expectClose(KANLinear(3, 2).grid.value, try Self.golden.tensor("grid"), rtol: 0, atol: 1e-6, "grid")
    }

    @Test func basesOutputAndGradientsMatchGolden() throws {
        let g = Self.golden
        let layer = try goldenLayer()
        let x = try g.tensor("x").requiringGrad()
        let bases = try Tensor.bSplineBases(x, grid: layer.grid.value, order: 3)
        expectClose(bases, try g.tensor("bases"), rtol: 1e-4, atol: 1e-6, "bases")
        let out = try layer(x)
        expectClose(out, try g.tensor("output"), rtol: 1e-4, atol: 1e-6, "output")
        try (out * g.tensor("upstream")).sum().backward()
        expectClose(try #require(x.grad), try g.tensor("grad_x"), rtol: 1e-4, atol: 1e-5, "grad_x")
        expectClose(try #require(layer.baseWeight.grad), try g.tensor("grad_base_weight"), rtol: 1e-4, atol: 1e-5, "gbw")
        expectClose(try #require(layer.splineWeight.grad), try g.tensor("grad_spline_weight"), rtol: 1e-4, atol: 1e-5, "gsw")
        expectClose(try #require(layer.splineScaler.grad), try g.tensor("grad_spline_scaler"), rtol: 1e-4, atol: 1e-5, "gss")
    }

    @Test func basesArePartitionOfUnityInsideTheRange() throws {
        let x = Tensor((0..<40).map { -1 + Double($0) / 20 }, shape: [40, 1], dtype: .float64)
        let grid = KANLinear(1, 1).grid.value
        for order in 0...4 {
            let knots = Tensor(KANLinearTestKnots.uniform(order: order), shape: [1, 5 + 2 * order + 1], dtype: .float64)
            let sums = try Tensor.bSplineBases(x, grid: knots, order: order).sum(axes: [2]).toDoubleArray()
            #expect(sums.allSatisfy { Swift.abs($0 - 1) < 1e-12 }, "order \(order)")
        }
        #expect(grid.shape == [1, 12])
    }

    @Test func gradCheckFloat64() throws {
        let gen = Generator(seed: 3)
        let x = Tensor.uniform([4, 2], low: -1.2, high: 1.2, dtype: .float64, generator: gen)
        let grid = KANLinear(2, 3).grid.value.to(.float64)
        let bw = Tensor.randn([3, 2], dtype: .float64, generator: gen)
        let sw = Tensor.randn([3, 2, 8], dtype: .float64, generator: gen)
        let ss = Tensor.randn([3, 2], dtype: .float64, generator: gen)
        let result = try GradCheck.check([x, bw, sw, ss]) { xs in
            try KANLinear.forward(xs[0], grid: grid, baseWeight: xs[1], splineWeight: xs[2], splineScaler: xs[3], splineOrder: 3)
        }
        #expect(result.passed, "\(result)")
    }

    @Test func wrongFeatureCountIsATensorError() {
        let layer = KANLinear(3, 2)
        #expect(throws: TensorError.self) { try layer(Tensor.zeros([4, 5])) }
        #expect(throws: TensorError.self) { try layer(Tensor.zeros([3])) }
        #expect(throws: TensorError.self) { try KAN([784, 8, 10])(Tensor.zeros([2, 1, 27, 28])) }
    }
}

enum KANLinearTestKnots {
    static func uniform(order: Int) -> [Double] { (-order...(5 + order)).map { Double($0) * 0.4 - 1 } }
}
