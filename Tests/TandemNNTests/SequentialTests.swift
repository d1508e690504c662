import Testing
import TandemNN
import TandemTestSupport

@Suite struct SequentialTests {
    /// `Sequential(ReLU, MaxPool2d)` pools first; values must equal ReLU then pooling bit for
    /// bit and gradients as numbers, with ties between positives, windows of only negatives, zeros,
    /// NaN and padding.
    @Test func reluBeforeMaxPoolingMatchesTheWrittenOrder() throws {
        var values = Tensor.randn([2, 3, 6, 6], generator: Generator(seed: 3)).toFloatArray()
        for i in stride(from: 0, to: values.count, by: 7) { values[i] = 0.5 }     // ties with their neighbours
        for i in stride(from: 3, to: values.count, by: 11) { values[i] = 0 }
        for i in 0..<4 { values[i] = -1 - Float(i) }                                 // a window of negatives
        values[40] = .nan
        for padding in [0, 1] {
            let model = Sequential(ReLU(), MaxPool2d(kernelSize: 2, stride: padding == 0 ? 2 : 1, padding: padding))
            let a = Tensor(values, shape: [2, 3, 6, 6]).requiringGrad()
            let b = Tensor(values, shape: [2, 3, 6, 6]).requiringGrad()
            let fused = try model(a)
            let written = try b.relu().maxPool2d(kernelSize: [2], stride: [padding == 0 ? 2 : 1], padding: [padding])
            let upstream = Tensor.randn(fused.shape, generator: Generator(seed: 4))
            try fused.backward(upstream)
            try written.backward(upstream)
            #expect(fused.toFloatArray().map(\.bitPattern) == written.toFloatArray().map(\.bitPattern), "padding \(padding)")
            let ga = try #require(a.grad).toFloatArray(), gb = try #require(b.grad).toFloatArray()
            // Equal as numbers: the written order's ReLU backward gives −0 where it masks a negative upstream.
            #expect(ga == gb, "padding \(padding)")
        }
    }

    /// A wrong input shape is the pooling's typed error, as in the written order (ReLU takes any shape).
    @Test func wrongShapeIsTheTypedPoolingError() {
        let model = Sequential(ReLU(), MaxPool2d(kernelSize: 2))
        #expect {
            _ = try model(Tensor.zeros([4, 4]))
        } throws: { error in
            guard case TensorError.shapeMismatch(let op, _) = error else { return false }
            return op == "maxPool2d"
        }
    }

    /// `Conv2d, BatchNorm2d, ReLU, MaxPool2d` runs fused in training mode: two forward and
    /// backward passes give the outputs, gradients, running statistics and batch count of the
    /// same layers called one by one; in eval mode both paths use the running statistics.
    @Test func convBlockRunsFusedWithTheLayersResults() throws {
        func block() -> [any Module] {
            let g = Generator(seed: 9)
            return [Conv2d(3, 16, kernelSize: 3, padding: 1, generator: g), BatchNorm2d(16), ReLU(), MaxPool2d(kernelSize: 2)]
        }
        let fused = Sequential(block()), layers = block()
        let x = Tensor.randn([4, 3, 10, 10], generator: Generator(seed: 10))
        for _ in 0..<2 {
            let a = try fused(x)
            var b = x
            for layer in layers { b = try layer(b) }
            #expect(Closeness.mismatch(a, b, rtol: 1e-4, atol: 1e-5, "output") == nil)
            try (a * a).sum().backward()
            try (b * b).sum().backward()
        }
        let reference = Sequential(layers)
        let layerGrads = Dictionary(uniqueKeysWithValues: reference.namedParameters().map { ($0.0, $0.1.grad) })
        for (name, parameter) in fused.namedParameters() {
            let got = try #require(parameter.grad, "\(name)"), expected = try #require(layerGrads[name] ?? nil, "\(name)")
            #expect(Closeness.mismatch(got, expected, rtol: 1e-3, atol: 2e-4, name) == nil)
        }
        let layerState = Dictionary(uniqueKeysWithValues: reference.stateDict())
        for (name, value) in fused.stateDict() {
            let expected = try #require(layerState[name])
            #expect(Closeness.mismatch(value, expected, rtol: 1e-4, atol: 1e-5, name) == nil)
        }
        #expect(try fused.stateDict().first { $0.0 == "1.num_batches_tracked" }?.1.item() == 2)
        fused.eval()
        var b = x
        for layer in layers { layer.train(false); b = try layer(b) }
        #expect(Closeness.mismatch(try fused(x), b, rtol: 1e-4, atol: 1e-5, "eval output") == nil)
        let evaluated = try Tensor.withNoGrad { try fused(x) }  // the fused inference path
        #expect(Closeness.mismatch(evaluated, b, rtol: 1e-4, atol: 1e-5, "eval output without gradients") == nil)
    }

    /// A wrong input for a block that would run fused is the convolution's typed error, as when
    /// the layers run one by one, in training and in evaluation without gradients.
    @Test func convBlockWithWrongInputIsTheConvolutionsTypedError() throws {
        let model = Sequential(Conv2d(3, 8, kernelSize: 3), BatchNorm2d(8), ReLU(), MaxPool2d(kernelSize: 2))
        func isConvShapeError(_ error: any Error) -> Bool {
            guard case TensorError.shapeMismatch(let op, _) = error else { return false }
            return op == "conv2d"
        }
        #expect(performing: { _ = try model(Tensor.randn([2, 4, 8, 8])) }, throws: isConvShapeError)
        #expect(performing: { _ = try model(Tensor.randn([2, 3, 8])) }, throws: isConvShapeError)
        model.eval()
        #expect(performing: { _ = try Tensor.withNoGrad { try model(Tensor.randn([2, 4, 8, 8])) } }, throws: isConvShapeError)
    }

    /// A NaN in the input shows in the output of a block that would run fused, in training and
    /// in evaluation, as with the layers one by one (oneDNN's fused ReLU would make it 0).
    @Test func convBlockKeepsNaN() throws {
        let model = Sequential(Conv2d(3, 8, kernelSize: 3), BatchNorm2d(8), ReLU(), MaxPool2d(kernelSize: 2))
        var values = Tensor.randn([2, 3, 8, 8], generator: Generator(seed: 9)).toFloatArray()
        values[20] = .nan
        let x = Tensor(values, shape: [2, 3, 8, 8])
        model.eval()
        let evaluated = try Tensor.withNoGrad { try model(x) }.toFloatArray()
        #expect(evaluated.contains(where: \.isNaN) && !evaluated.allSatisfy(\.isNaN), "evaluation: only the windows that saw it")
        model.train()
        #expect(try model(x).toFloatArray().allSatisfy(\.isNaN), "training: the batch statistics are NaN")
    }

    /// Finite differences through `Sequential(ReLU, MaxPool2d)` (inputs away from 0 and ties).
    @Test func reluThenMaxPoolingGradientCheck() throws {
        let x = Tensor.randn([1, 2, 4, 4], dtype: .float64, generator: Generator(seed: 5))
        let model = Sequential(ReLU(), MaxPool2d(kernelSize: 2))
        let result = try GradCheck.check([x]) { xs in try model(xs[0]) }
        #expect(result.passed, "\(result)")
    }
}
