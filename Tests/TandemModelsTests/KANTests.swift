import Foundation
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

    func rms(_ a: Tensor, _ b: Tensor) throws -> Double {
        try ((a - b) * (a - b)).mean().item().squareRoot()
    }

    /// A small network with non-trivial splines and a sample of training inputs.
    func trainedLikeNetwork() throws -> (KAN, Tensor) {
        let gen = Generator(seed: 11)
        let kan = KAN([2, 3, 1], generator: gen)
        for layer in kan.layers {
            try layer.splineWeight.value.copyValues(from: Tensor.randn(layer.splineWeight.shape, generator: gen))
        }
        let x = Tensor.uniform([256, 2], low: -1, high: 1, generator: gen)
        return (kan, x)
    }

    @Test func gridExtensionKeepsTheFunction() throws {
        let (kan, x) = try trainedLikeNetwork()
        try kan.updateGrid(from: x)                        // every layer's grid covers its inputs
        let before = try Tensor.withNoGrad { try kan(x) }
        for size in [10, 20] {
            try kan.extendGrid(to: size, using: x)
            #expect(kan.layers.allSatisfy { $0.gridSize == size && $0.splineWeight.shape[2] == size + 3 })
            let after = try Tensor.withNoGrad { try kan(x) }
            let change = try rms(after, before)
            #expect(change < 1e-3, "grid \(size): RMS change \(change)")
        }
        #expect(kan.layers[0].grid.value.shape == [2, 27])
    }

    @Test func gridUpdateFollowsTheDataAndRefits() throws {
        let layer = KANLinear(1, 1, generator: Generator(seed: 2))
        try layer.splineWeight.value.copyValues(from: Tensor.randn([1, 1, 8], generator: Generator(seed: 4)))
        let x = Tensor.uniform([400, 1], low: -0.5, high: 0.5, generator: Generator(seed: 8))
        let before = try Tensor.withNoGrad { try layer(x) }
        try layer.updateGrid(from: x)
        let knots = layer.grid.value.toDoubleArray()
        #expect(knots[3] < -0.49 && knots[3] > -0.52 && knots[8] > 0.49 && knots[8] < 0.52)
        // A cubic spline on a grid of the old width fits the old function closely, not exactly.
        #expect(try rms(try Tensor.withNoGrad { try layer(x) }, before) < 1e-2)
    }

    @Test func regulariserIsL1PlusEntropyOfEdgeScores() throws {
        let (kan, x) = try trainedLikeNetwork()
        let scores = try kan.edgeScores(x)
        #expect(scores.map(\.shape) == [[3, 2], [1, 3]])
        var expected = 0.0
        for a in scores.map({ $0.toDoubleArray() }) {
            let sum = a.reduce(0, +)
            expected += sum - a.map { $0 / sum }.map { $0 * Foundation.log($0) }.reduce(0, +)
        }
        let loss = try kan.regularizationLoss(x)
        #expect(Swift.abs(try loss.item() - expected) < 1e-4 * expected)
        try loss.backward()
        #expect(kan.layers[0].splineWeight.grad != nil)
        // Edge activations sum to the layer output.
        let layer = kan.layers[0]
        expectClose(try layer.edgeActivations(x).sum(axes: [2]), try layer(x), rtol: 1e-4, atol: 1e-5, "edges")
    }

    @Test func pruningRemovesExactlyTheWeakNodes() throws {
        let gen = Generator(seed: 21)
        let kan = KAN([3, 4, 2], generator: gen)
        let x = Tensor.uniform([64, 3], low: -1, high: 1, generator: gen)
        func zero(_ p: Parameter, axis: Int, index: Int) throws {
            var v = p.value.detach().toDoubleArray(), shape = p.shape
            let inner = shape[(axis + 1)...].reduce(1, *), outer = shape[..<axis].reduce(1, *), n = shape[axis]
            for o in 0..<outer { for r in 0..<inner { v[(o * n + index) * inner + r] = 0 } }
            shape = p.shape
            try p.value.copyValues(from: Tensor(v, shape: shape))
        }
        for layer in kan.layers { try layer.baseWeight.value.copyValues(from: Tensor.full(layer.baseWeight.shape, 0.5)) }
        try zero(kan.layers[0].baseWeight, axis: 0, index: 1)       // node 1: nothing comes in
        try zero(kan.layers[0].splineScaler, axis: 0, index: 1)
        try zero(kan.layers[1].baseWeight, axis: 1, index: 3)       // node 3: nothing goes out
        try zero(kan.layers[1].splineScaler, axis: 1, index: 3)
        let threshold = 1e-2
        let scores = try kan.nodeScores(x)[0]
        let weak = (0..<4).filter { scores.incoming[$0] <= threshold || scores.outgoing[$0] <= threshold }
        #expect(weak == [1, 3])
        let namesBefore = kan.stateDict().map(\.0)
        let w0 = kan.layers[0].baseWeight.value.toDoubleArray(), s1 = kan.layers[1].splineWeight.value
        let kept = try kan.prune(x, threshold: threshold)
        #expect(kept == [[0, 2]])
        #expect(kan.widths == [3, 2, 2])
        #expect(kan.stateDict().map(\.0) == namesBefore)
        #expect(kan.layers[0].baseWeight.value.toDoubleArray() == Array(w0[0..<3] + w0[6..<9]))
        #expect(kan.layers[1].grid.value.shape == [2, 12])
        expectClose(kan.layers[1].splineWeight.value, try s1.indexSelect(axis: 1, index: Tensor(int64: [0, 2])),
                    rtol: 0, atol: 0, "pruned spline weights")
        #expect(try kan(x).shape == [64, 2])
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
