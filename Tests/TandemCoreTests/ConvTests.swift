import Testing
import TandemCore
import TandemTestSupport

/// Expects `body` to throw a TensorError whose description names `op` and contains every
/// string of `mentions`.
func expectTensorError(_ op: String, mentions: [String] = [], _ body: () throws -> Tensor,
                       sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let t = try body()
        Issue.record("\(op): expected a TensorError, got a tensor of shape \(t.shape)", sourceLocation: sourceLocation)
    } catch let error as TensorError {
        let text = error.description
        #expect(text.hasPrefix(op + ":"), "\(text)", sourceLocation: sourceLocation)
        for m in mentions { #expect(text.contains(m), "'\(m)' missing from: \(text)", sourceLocation: sourceLocation) }
    } catch {
        Issue.record("\(op): expected a TensorError, got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct ConvGoldenTests {
    static let configs = ["basic", "stride2", "dilation2", "groups2", "depthwise", "k5p2", "k1_nobias"]

    /// Every configuration of ops_conv2d.safetensors, in float32 and (upcast) float64.
    @Test(arguments: configs, [DType.float32, .float64])
    func conv2dMatchesPyTorch(config: String, dtype: DType) throws {
        let file = try Golden.load("ops_conv2d")
        func t(_ name: String) throws -> Tensor { try file.tensor("\(config).\(name)") }
        let c = try t("config").toIntArray()
        let hasBias = c[7] != 0
        let x = try t("input").to(dtype).requiringGrad()
        let w = try t("weight").to(dtype).requiringGrad()
        let b = hasBias ? try t("bias").to(dtype).requiringGrad() : nil
        let out = try Tensor.conv2d(x, weight: w, bias: b, stride: [c[0], c[1]], padding: [c[2], c[3]],
                                    dilation: [c[4], c[5]], groups: c[6])
        #expect(out.dtype == dtype)
        if let m = Closeness.mismatch(out, try t("output"), rtol: 1e-4, atol: 1e-5, "\(config) output") { Issue.record("\(m)") }
        try (out * t("upstream").to(dtype)).sum().backward()
        if let m = Closeness.mismatch(try #require(x.grad), try t("grad_input"), rtol: 1e-4, atol: 1e-5, "\(config) grad_input") {
            Issue.record("\(m)")
        }
        if let m = Closeness.mismatch(try #require(w.grad), try t("grad_weight"), rtol: 1e-4, atol: 1e-4, "\(config) grad_weight") {
            Issue.record("\(m)")
        }
        if let b {
            if let m = Closeness.mismatch(try #require(b.grad), try t("grad_bias"), rtol: 1e-4, atol: 1e-4, "\(config) grad_bias") {
                Issue.record("\(m)")
            }
        }
    }

    /// Mamba's causal depthwise conv1d: pad k−1, keep the first L outputs.
    @Test(arguments: [DType.float32, .float64])
    func conv1dDepthwiseCausalMatchesPyTorch(dtype: DType) throws {
        let file = try Golden.load("ops_conv1d_depthwise_causal")
        func t(_ name: String) throws -> Tensor { try file.tensor("k4.\(name)") }
        let x = try t("input").to(dtype).requiringGrad()
        let w = try t("weight").to(dtype).requiringGrad()
        let b = try t("bias").to(dtype).requiringGrad()
        let (channels, length, k) = (x.shape[1], x.shape[2], w.shape[2])
        let out = try Tensor.conv1d(x, weight: w, bias: b, padding: k - 1, groups: channels)
            .slice(axis: 2, start: 0, end: length)
        if let m = Closeness.mismatch(out, try t("output"), rtol: 1e-5, atol: 1e-6, "output") { Issue.record("\(m)") }
        try (out * t("upstream").to(dtype)).sum().backward()
        if let m = Closeness.mismatch(try #require(x.grad), try t("grad_input"), rtol: 1e-5, atol: 1e-6, "grad_input") {
            Issue.record("\(m)")
        }
        if let m = Closeness.mismatch(try #require(w.grad), try t("grad_weight"), rtol: 1e-5, atol: 1e-5, "grad_weight") {
            Issue.record("\(m)")
        }
        if let m = Closeness.mismatch(try #require(b.grad), try t("grad_bias"), rtol: 1e-5, atol: 1e-5, "grad_bias") {
            Issue.record("\(m)")
        }
    }
}

@Suite struct ConvGradCheckTests {
    struct Config: CustomStringConvertible, Sendable {
        var input: [Int], weight: [Int], stride: [Int], padding: [Int], dilation: [Int], groups: Int, bias: Bool
        var description: String { "x\(input) w\(weight) s\(stride) p\(padding) d\(dilation) g\(groups) bias \(bias)" }
    }

    static let configs: [Config] = [
        Config(input: [2, 3, 5, 5], weight: [4, 3, 3, 3], stride: [1], padding: [1], dilation: [1], groups: 1, bias: true),
        Config(input: [1, 2, 7, 6], weight: [3, 2, 3, 2], stride: [2, 1], padding: [1, 0], dilation: [1], groups: 1, bias: true),
        Config(input: [1, 2, 7, 7], weight: [2, 2, 3, 3], stride: [1], padding: [2], dilation: [2, 3], groups: 1, bias: false),
        Config(input: [2, 4, 5, 5], weight: [6, 2, 3, 3], stride: [2], padding: [1], dilation: [1], groups: 2, bias: true),
        Config(input: [1, 3, 6, 5], weight: [3, 1, 3, 3], stride: [2, 3], padding: [1, 2], dilation: [1, 2], groups: 3, bias: true),
        Config(input: [2, 2, 4, 4], weight: [3, 2, 1, 1], stride: [3], padding: [0], dilation: [1], groups: 1, bias: true),
    ]

    @Test(arguments: configs)
    func conv2dFiniteDifferences(config: Config) throws {
        let g = Generator(seed: 11)
        var inputs = [Tensor.randn(config.input, dtype: .float64, generator: g),
                      Tensor.randn(config.weight, dtype: .float64, generator: g)]
        if config.bias { inputs.append(Tensor.randn([config.weight[0]], dtype: .float64, generator: g)) }
        let result = try GradCheck.check(inputs) { xs in
            try Tensor.conv2d(xs[0], weight: xs[1], bias: xs.count > 2 ? xs[2] : nil, stride: config.stride,
                              padding: config.padding, dilation: config.dilation, groups: config.groups)
        }
        #expect(result.passed, "\(config): \(result.report)")
    }

    @Test func conv1dFiniteDifferences() throws {
        let g = Generator(seed: 12)
        let x = Tensor.randn([2, 4, 9], dtype: .float64, generator: g)
        let w = Tensor.randn([6, 2, 3], dtype: .float64, generator: g)
        let b = Tensor.randn([6], dtype: .float64, generator: g)
        let result = try GradCheck.check([x, w, b]) { xs in
            try Tensor.conv1d(xs[0], weight: xs[1], bias: xs[2], stride: 2, padding: 2, dilation: 2, groups: 2)
        }
        #expect(result.passed, "\(result.report)")
        let causal = try GradCheck.check([x, Tensor.randn([4, 1, 4], dtype: .float64, generator: g)]) { xs in
            try Tensor.conv1d(xs[0], weight: xs[1], bias: nil, padding: 3, groups: 4).slice(axis: 2, start: 0, end: 9)
        }
        #expect(causal.passed, "\(causal.report)")
    }

    /// Non-contiguous operands go through the same path as contiguous copies.
    @Test func nonContiguousOperands() throws {
        let g = Generator(seed: 13)
        let x = Tensor.randn([2, 5, 5, 3], generator: g)
        let w = Tensor.randn([4, 3, 3, 3], generator: g)
        let xt = try x.permute([0, 3, 1, 2])
        let a = try Tensor.conv2d(xt, weight: w, bias: nil, padding: [1])
        let b = try Tensor.conv2d(xt.contiguous(), weight: w, bias: nil, padding: [1])
        #expect(Closeness.mismatch(a, b, rtol: 0, atol: 0) == nil)
    }

    /// float32 against float64 on a larger, MNIST-like layer (threaded kernels, several chunks).
    @Test func float32AgreesWithFloat64OnALargerLayer() throws {
        let g = Generator(seed: 14)
        let x = Tensor.randn([8, 16, 14, 14], generator: g).requiringGrad()
        let w = try (Tensor.randn([32, 16, 5, 5], generator: g) * 0.05).requiringGrad()
        let b = Tensor.randn([32], generator: g).requiringGrad()
        let up = Tensor.randn([8, 32, 14, 14], generator: g)
        let x64 = x.to(.float64).requiringGrad(), w64 = w.to(.float64).requiringGrad(), b64 = b.to(.float64).requiringGrad()
        let y = try Tensor.conv2d(x, weight: w, bias: b, padding: [2])
        let y64 = try Tensor.conv2d(x64, weight: w64, bias: b64, padding: [2])
        try (y * up).sum().backward()
        try (y64 * up.to(.float64)).sum().backward()
        #expect(Closeness.mismatch(y, y64, rtol: 1e-4, atol: 1e-5, "output") == nil)
        #expect(Closeness.mismatch(try #require(x.grad), try #require(x64.grad), rtol: 1e-4, atol: 1e-5, "grad_input") == nil)
        #expect(Closeness.mismatch(try #require(w.grad), try #require(w64.grad), rtol: 1e-4, atol: 1e-3, "grad_weight") == nil)
        #expect(Closeness.mismatch(try #require(b.grad), try #require(b64.grad), rtol: 1e-4, atol: 1e-3, "grad_bias") == nil)
    }

    /// Only the gradients of inputs that require grad are produced.
    @Test func frozenInputGetsNoGradient() throws {
        let g = Generator(seed: 15)
        let x = Tensor.randn([2, 1, 8, 8], generator: g)
        let w = Tensor.randn([4, 1, 5, 5], generator: g).requiringGrad()
        let y = try Tensor.conv2d(x, weight: w, bias: nil, padding: [2])
        try y.sum().backward()
        #expect(x.grad == nil)
        #expect(w.grad?.shape == [4, 1, 5, 5])
    }
}

@Suite struct ConvBadInputTests {
    let x = Tensor.zeros([2, 4, 6, 6])
    let w = Tensor.zeros([6, 2, 3, 3])

    @Test func wrongRanks() {
        expectTensorError("conv2d", mentions: ["[4, 6, 6]"]) { try Tensor.conv2d(Tensor.zeros([4, 6, 6]), weight: w, bias: nil) }
        expectTensorError("conv2d", mentions: ["[6, 2, 3]"]) { try Tensor.conv2d(x, weight: Tensor.zeros([6, 2, 3]), bias: nil) }
        expectTensorError("conv1d", mentions: ["[2, 4, 6, 6]"]) { try Tensor.conv1d(x, weight: w, bias: nil) }
    }

    @Test func channelsAndGroups() {
        expectTensorError("conv2d", mentions: ["groups 3", "[2, 4, 6, 6]"]) { try Tensor.conv2d(x, weight: w, bias: nil, groups: 3) }
        expectTensorError("conv2d", mentions: ["[6, 2, 3, 3]"]) { try Tensor.conv2d(x, weight: w, bias: nil, groups: 1) }
        expectTensorError("conv2d", mentions: ["groups"]) { try Tensor.conv2d(x, weight: w, bias: nil, groups: 0) }
        expectTensorError("conv2d", mentions: ["bias [5]"]) { try Tensor.conv2d(x, weight: w, bias: Tensor.zeros([5]), groups: 2) }
    }

    @Test func kernelLargerThanPaddedInput() {
        let big = Tensor.zeros([6, 2, 7, 7])
        expectTensorError("conv2d", mentions: ["[6, 2, 7, 7]", "larger"]) { try Tensor.conv2d(x, weight: big, bias: nil, groups: 2) }
        expectTensorError("conv2d", mentions: ["larger"]) {
            try Tensor.conv2d(x, weight: w, bias: nil, dilation: [3], groups: 2)
        }
        expectTensorError("conv1d", mentions: ["larger"]) {
            try Tensor.conv1d(Tensor.zeros([1, 2, 3]), weight: Tensor.zeros([2, 2, 5]), bias: nil)
        }
    }

    @Test func badHyperparameters() {
        expectTensorError("conv2d", mentions: ["stride"]) { try Tensor.conv2d(x, weight: w, bias: nil, stride: [0], groups: 2) }
        expectTensorError("conv2d", mentions: ["stride"]) { try Tensor.conv2d(x, weight: w, bias: nil, stride: [1, 1, 1], groups: 2) }
        expectTensorError("conv2d", mentions: ["padding"]) { try Tensor.conv2d(x, weight: w, bias: nil, padding: [-1], groups: 2) }
        expectTensorError("conv2d", mentions: ["dilation"]) { try Tensor.conv2d(x, weight: w, bias: nil, dilation: [0], groups: 2) }
        expectTensorError("conv1d", mentions: ["stride"]) {
            try Tensor.conv1d(Tensor.zeros([1, 2, 8]), weight: Tensor.zeros([2, 2, 3]), bias: nil, stride: 0)
        }
    }

    @Test func dtypes() {
        expectTensorError("conv2d", mentions: ["float64"]) { try Tensor.conv2d(x, weight: w.to(.float64), bias: nil, groups: 2) }
        expectTensorError("conv2d", mentions: ["int64"]) { try Tensor.conv2d(x.to(.int64), weight: w, bias: nil, groups: 2) }
    }
}
