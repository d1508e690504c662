import Testing
import TandemModels
import TandemNN
import TandemTestSupport

/// MambaOut's GatedCNNBlock against the reference (golden file), a float64 gradient check,
/// and the four-stage model's shapes, names and input checks.
@Suite struct MambaOutTests {
    static let golden = try! Golden.load("mambaout_gatedcnn")

    func expectClose(_ a: Tensor, _ b: Tensor, rtol: Double, atol: Double, _ label: String) {
        let m = Closeness.mismatch(a, b, rtol: rtol, atol: atol, label)
        #expect(m == nil, "\(m ?? "")")
    }

    @Test func gatedCNNBlockMatchesGolden() throws {
        let g = Self.golden
        let block = GatedCNNBlock(8)
        #expect(block.hidden == 21 && block.convChannels == 8)
        let names = block.stateDict().map(\.0)
        #expect(names == ["norm.weight", "norm.bias", "fc1.weight", "fc1.bias", "conv.weight", "conv.bias",
                          "fc2.weight", "fc2.bias"])
        var state: [String: Tensor] = [:]
        for name in names { state[name] = try g.tensor(name) }
        try block.loadStateDict(state)
        let x = try g.tensor("input").requiringGrad()
        expectClose(try block.fc1(block.norm(x)), try g.tensor("inter.fc1_out"), rtol: 1e-4, atol: 1e-5, "fc1_out")
        let out = try block(x)
        expectClose(out, try g.tensor("output"), rtol: 1e-4, atol: 1e-5, "output")
        try (out * g.tensor("upstream")).sum().backward()
        expectClose(try #require(x.grad), try g.tensor("grad.input"), rtol: 1e-4, atol: 1e-5, "grad.input")
        for (name, p) in block.namedParameters() {
            expectClose(try #require(p.grad), try g.tensor("grad." + name), rtol: 1e-4, atol: 1e-4, "grad." + name)
        }
    }

    @Test func gatedCNNBlockGradCheckFloat64() throws {
        let block = GatedCNNBlock(4, expansionRatio: 1.5, kernelSize: 3, convRatio: 0.5, generator: Generator(seed: 5))
        let params = block.parameters()
        let x = Tensor.randn([1, 3, 3, 4], dtype: .float64, generator: Generator(seed: 6))
        let perturbed = try params.map { try $0.value.to(.float64) + Tensor.randn($0.shape, dtype: .float64, generator: Generator(seed: 9)) * 0.1 }
        let result = try GradCheck.check([x] + perturbed, atol: 1e-5, rtol: 1e-4) { xs in
            for (p, v) in zip(params, xs.dropFirst()) { p.value = v }
            return try block(xs[0])
        }
        #expect(result.passed, "\(result)")
    }

    @Test func modelShapesAndNames() throws {
        let model = MambaOut(.mini, inChannels: 1, numClasses: 10, generator: Generator(seed: 1))
        let logits = try model(Tensor.randn([2, 1, 28, 28]))
        #expect(logits.shape == [2, 10])
        let names = model.stateDict().map(\.0)
        #expect(names.contains("downsample_layers.0.conv1.weight"))
        #expect(names.contains("downsample_layers.3.norm.bias"))
        #expect(names.contains("stages.2.1.fc1.weight"))
        #expect(names.contains("head.fc2.bias") && names.contains("norm.weight"))
        #expect(MambaOut.Config.femto.dims == [48, 96, 192, 288])
        #expect(MambaOut.Config.base.depths == [3, 4, 27, 3])
    }

    @Test func badInputIsATensorError() {
        #expect(throws: TensorError.self) { try GatedCNNBlock(8)(Tensor.zeros([2, 6, 6, 7])) }
        #expect(throws: TensorError.self) { try GatedCNNBlock(8)(Tensor.zeros([6, 6, 8])) }
        let model = MambaOut(.mini, inChannels: 1, numClasses: 10)
        #expect(throws: TensorError.self) { try model(Tensor.zeros([2, 3, 28, 28])) }
    }
}
