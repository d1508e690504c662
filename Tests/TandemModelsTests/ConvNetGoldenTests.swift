import Testing
import TandemModels
import TandemNN
import TandemOptim
import TandemTestSupport

/// The MNIST ConvNet against PyTorch: forward, loss, gradients, 3 SGD steps, and a
/// checkpoint saved by PyTorch.
@Suite struct ConvNetGoldenTests {
    static let golden = try! Golden.load("convnet_mnist")

    func initialModel() throws -> ConvNet {
        let model = ConvNet()
        var state: [String: Tensor] = [:]
        for (name, t) in Self.golden.tensors where name.hasPrefix("init.") { state[String(name.dropFirst(5))] = t }
        try model.loadStateDict(state)
        return model
    }

    func expectClose(_ a: Tensor, _ b: Tensor, rtol: Double, atol: Double, _ label: String) {
        let m = Closeness.mismatch(a, b, rtol: rtol, atol: atol, label)
        #expect(m == nil, "\(m ?? "")")
    }

    @Test func stateDictNamesMatchPyTorch() throws {
        // PyTorch's model.state_dict() order (safetensors files sort their keys, so it is spelled out).
        let names = ConvNet().stateDict().map(\.0)
        let bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
        let expected = ["layer1.0.weight", "layer1.0.bias"] + bn.map { "layer1.1." + $0 }
            + ["layer2.0.weight", "layer2.0.bias"] + bn.map { "layer2.1." + $0 } + ["fc.weight", "fc.bias"]
        #expect(names == expected)
        let goldenNames = Set(Self.golden.tensors.keys.filter { $0.hasPrefix("init.") }.map { String($0.dropFirst(5)) })
        #expect(Set(names) == goldenNames)
    }

    @Test func forwardLossAndGradients() throws {
        let g = Self.golden
        let model = try initialModel()
        let images = try g.tensor("images"), labels = try g.tensor("labels")
        let act1 = try model.layer1(images)
        expectClose(act1, try g.tensor("act.layer1"), rtol: 1e-4, atol: 1e-5, "act.layer1")
        let model2 = try initialModel()
        let logits = try model2(images)
        expectClose(logits, try g.tensor("logits"), rtol: 1e-4, atol: 1e-5, "logits")
        let loss = try Tensor.crossEntropy(logits, target: labels)
        expectClose(try loss.reshape([1]), try g.tensor("loss"), rtol: 1e-4, atol: 1e-5, "loss")
        try loss.backward()
        for (name, p) in model2.namedParameters() {
            expectClose(try #require(p.grad), try g.tensor("grad." + name), rtol: 1e-3, atol: 5e-5, "grad." + name)
        }
    }

    @Test func threeSGDSteps() throws {
        let g = Self.golden
        let model = try initialModel()
        let images = try g.tensor("images"), labels = try g.tensor("labels")
        let opt = try SGD(model.parameters(), lr: 0.01, momentum: 0.9, weightDecay: 5e-4)
        var losses: [Double] = []
        for _ in 0..<3 {
            opt.zeroGrad()
            let loss = try Tensor.crossEntropy(model(images), target: labels)
            try loss.backward()
            try opt.step()
            losses.append(try loss.item())
        }
        expectClose(Tensor(losses, dtype: .float32), try g.tensor("losses"), rtol: 1e-4, atol: 1e-5, "losses")
        for (name, t) in model.stateDict() {
            let expected = try g.tensor("step3." + name)
            if t.dtype == .int64 {
                #expect(t.toIntArray() == expected.toIntArray(), "\(name)")
            } else {
                expectClose(t, expected, rtol: 1e-4, atol: 1e-5, "step3." + name)
            }
        }
    }

    @Test func pytorchCheckpointReproducesEvalLogits() throws {
        let state = try Golden.load("torch_checkpoint_convnet")
        let eval = try Golden.load("torch_checkpoint_eval")
        let model = ConvNet()
        try model.loadStateDict(state.tensors)
        // Every tensor round-trips bit-exactly.
        for (name, t) in model.stateDict() {
            #expect(t.toDoubleArray() == (try state.tensor(name)).toDoubleArray(), "\(name)")
        }
        model.eval()
        let logits = try Tensor.withNoGrad { try model(eval.tensor("images")) }
        expectClose(logits, try eval.tensor("logits"), rtol: 1e-4, atol: 1e-5, "eval logits")
        #expect(try logits.argmax(axis: 1).toIntArray() == eval.tensor("pred").toIntArray())
    }

    @Test func mismatchedCheckpointIsATypedError() throws {
        let model = ConvNet()
        var state = Dictionary(uniqueKeysWithValues: model.stateDict())
        state["fc.weight"] = Tensor.zeros([10, 100])
        #expect(throws: ModuleError.self) { try model.loadStateDict(state) }
        state.removeValue(forKey: "fc.weight")
        #expect { try model.loadStateDict(state) } throws: { "\($0)".contains("fc.weight") }
        var prefixed: [String: Tensor] = [:]
        for (k, v) in model.stateDict() { prefixed["module." + k] = v }
        try model.loadStateDict(prefixed)
        #expect(throws: TensorError.self) { try model(Tensor.zeros([2, 3, 28, 28])) }
    }
}
