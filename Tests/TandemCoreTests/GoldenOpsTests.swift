import Testing
import TandemCore
import TandemTestSupport

/// Golden values from `ops_pool_norm_act.safetensors` (PyTorch 2.15, float32), every case
/// except maxpool. Tolerances are the README's recommendations.
@Suite struct GoldenOpsTests {
    let file: SafeTensors.File

    init() throws { file = try Golden.load("ops_pool_norm_act") }

    func g(_ name: String) throws -> Tensor { try file.tensor(name) }

    /// Compares `actual` (reshaped to the golden shape when the counts agree, e.g. a loss of
    /// shape [] against the stored (1,)) with the golden tensor `name`.
    func expectClose(_ actual: Tensor?, _ name: String, rtol: Double, atol: Double,
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        if let message = try file.mismatch(actual, name, rtol: rtol, atol: atol) {
            Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        }
    }

    // Tolerances from the README.
    static let elementwise = (rtol: 1e-5, atol: 1e-6)
    static let norm = (rtol: 1e-4, atol: 1e-5)
    static let lse = (rtol: 1e-4, atol: 1e-4)

    // MARK: - Normalisation

    @Test func batchNormTrainingAndEval() throws {
        let x = try g("bn.x").requiringGrad()
        let weight = try g("bn.weight").requiringGrad(), bias = try g("bn.bias").requiringGrad()
        var runningMean: Tensor? = try g("bn.running_mean"), runningVar: Tensor? = try g("bn.running_var")
        let out = try Tensor.batchNorm(x, runningMean: &runningMean, runningVar: &runningVar, weight: weight, bias: bias,
                                       training: true, momentum: 0.1, eps: 1e-5)
        try (out * g("bn.upstream")).sum().backward()
        let tol = Self.norm
        try expectClose(out, "bn.out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(x.grad, "bn.grad_x", rtol: tol.rtol, atol: tol.atol)
        try expectClose(weight.grad, "bn.grad_weight", rtol: tol.rtol, atol: tol.atol)
        try expectClose(bias.grad, "bn.grad_bias", rtol: tol.rtol, atol: tol.atol)
        try expectClose(runningMean, "bn.running_mean_new", rtol: tol.rtol, atol: tol.atol)
        try expectClose(runningVar, "bn.running_var_new", rtol: tol.rtol, atol: tol.atol)

        var rm: Tensor? = try g("bn.running_mean_new"), rv: Tensor? = try g("bn.running_var_new")
        let evalOut = try Tensor.batchNorm(g("bn.x"), runningMean: &rm, runningVar: &rv, weight: g("bn.weight"),
                                           bias: g("bn.bias"), training: false, eps: 1e-5)
        try expectClose(evalOut, "bn.eval_out", rtol: tol.rtol, atol: tol.atol)
        // Eval mode leaves the running statistics alone.
        try expectClose(rm, "bn.running_mean_new", rtol: 0, atol: 0)
        try expectClose(rv, "bn.running_var_new", rtol: 0, atol: 0)
    }

    @Test func layerNorm() throws {
        let x = try g("ln.x").requiringGrad()
        let weight = try g("ln.weight").requiringGrad(), bias = try g("ln.bias").requiringGrad()
        let out = try Tensor.layerNorm(x, normalizedShape: [8], weight: weight, bias: bias, eps: 1e-5)
        try (out * g("ln.upstream")).sum().backward()
        let tol = Self.norm
        try expectClose(out, "ln.out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(x.grad, "ln.grad_x", rtol: tol.rtol, atol: tol.atol)
        try expectClose(weight.grad, "ln.grad_weight", rtol: tol.rtol, atol: tol.atol)
        try expectClose(bias.grad, "ln.grad_bias", rtol: tol.rtol, atol: tol.atol)
    }

    @Test func rmsNorm() throws {
        let x = try g("rms.x").requiringGrad()
        let weight = try g("rms.weight").requiringGrad()
        let out = try Tensor.rmsNorm(x, normalizedShape: [8], weight: weight, eps: 1e-6)
        try (out * g("rms.upstream")).sum().backward()
        let tol = Self.norm
        try expectClose(out, "rms.out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(x.grad, "rms.grad_x", rtol: tol.rtol, atol: tol.atol)
        try expectClose(weight.grad, "rms.grad_weight", rtol: tol.rtol, atol: tol.atol)
    }

    // MARK: - Activations

    static let activations: [(String, @Sendable (Tensor) throws -> Tensor)] = [
        ("relu", { try $0.relu() }),
        ("silu", { try $0.silu() }),
        ("gelu", { try $0.gelu() }),
        ("gelu_tanh", { try $0.gelu(approximate: .tanh) }),
        ("softplus", { try $0.softplus() }),
        ("sigmoid", { try $0.sigmoid() }),
        ("tanh", { try $0.tanh() }),
    ]

    @Test(arguments: activations.map(\.0))
    func activation(_ name: String) throws {
        let f = Self.activations.first { $0.0 == name }!.1
        let x = try g("act.x").requiringGrad()
        let out = try f(x)
        try (out * g("act.upstream")).sum().backward()
        let tol = Self.elementwise
        try expectClose(out, "\(name).out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(x.grad, "\(name).grad_x", rtol: tol.rtol, atol: tol.atol)
    }

    // MARK: - Softmax

    @Test(arguments: ["2d", "nd"])
    func softmaxAndLogSoftmax(_ kind: String) throws {
        let tol = Self.elementwise
        let x = try g("softmax_\(kind).x").requiringGrad()
        let upstream = try g("softmax_\(kind).upstream")
        let out = try x.softmax(axis: 1)
        try (out * upstream).sum().backward()
        try expectClose(out, "softmax_\(kind).out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(x.grad, "softmax_\(kind).grad_x", rtol: tol.rtol, atol: tol.atol)

        let x2 = try g("softmax_\(kind).x").requiringGrad()
        let logOut = try x2.logSoftmax(axis: 1)
        try (logOut * upstream).sum().backward()
        try expectClose(logOut, "log_softmax_\(kind).out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(x2.grad, "log_softmax_\(kind).grad_x", rtol: tol.rtol, atol: tol.atol)
    }

    // MARK: - Losses

    @Test(arguments: ["ce", "ce_ignore", "ce_smooth", "ce_ignore_smooth", "ce_sum"])
    func crossEntropy(_ name: String) throws {
        let logits = try g("ce.logits").requiringGrad()
        let ignores = name.contains("ignore")
        let target = try g(ignores ? "ce.target_ign" : "ce.target")
        let loss = try Tensor.crossEntropy(logits, target: target, reduction: name == "ce_sum" ? .sum : .mean,
                                           ignoreIndex: -100, labelSmoothing: name.contains("smooth") ? 0.1 : 0)
        #expect(loss.shape == [])
        try loss.backward()
        let tol = Self.norm
        try expectClose(loss, "\(name).loss", rtol: tol.rtol, atol: tol.atol)
        try expectClose(logits.grad, "\(name).grad_logits", rtol: tol.rtol, atol: tol.atol)
    }

    @Test(arguments: [("mse", Reduction.mean), ("mse_sum", Reduction.sum)])
    func mse(_ name: String, _ reduction: Reduction) throws {
        let input = try g("mse.input").requiringGrad()
        let loss = try Tensor.mseLoss(input, g("mse.target"), reduction: reduction)
        try loss.backward()
        let tol = Self.norm
        try expectClose(loss, "\(name).loss", rtol: tol.rtol, atol: tol.atol)
        try expectClose(input.grad, "\(name).grad_input", rtol: tol.rtol, atol: tol.atol)
    }

    // MARK: - Linear algebra, scans

    @Test func linear() throws {
        let x = try g("linear.x").requiringGrad()
        let weight = try g("linear.weight").requiringGrad(), bias = try g("linear.bias").requiringGrad()
        let out = try Tensor.linear(x, weight: weight, bias: bias)
        try (out * g("linear.upstream")).sum().backward()
        let tol = Self.norm
        try expectClose(out, "linear.out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(x.grad, "linear.grad_x", rtol: tol.rtol, atol: tol.atol)
        try expectClose(weight.grad, "linear.grad_weight", rtol: tol.rtol, atol: tol.atol)
        try expectClose(bias.grad, "linear.grad_bias", rtol: tol.rtol, atol: tol.atol)
    }

    @Test(arguments: ["matmul", "bmm"])
    func matrixProduct(_ name: String) throws {
        let a = try g("\(name).a").requiringGrad(), b = try g("\(name).b").requiringGrad()
        let out = name == "bmm" ? try Tensor.bmm(a, b) : try Tensor.matmul(a, b)
        try (out * g("\(name).upstream")).sum().backward()
        let tol = Self.norm
        try expectClose(out, "\(name).out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(a.grad, "\(name).grad_a", rtol: tol.rtol, atol: tol.atol)
        try expectClose(b.grad, "\(name).grad_b", rtol: tol.rtol, atol: tol.atol)
    }

    @Test func cumsum() throws {
        let x = try g("cumsum.x").requiringGrad()
        let out = try x.cumsum(axis: 1)
        try (out * g("cumsum.upstream")).sum().backward()
        let tol = Self.elementwise
        try expectClose(out, "cumsum.out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(x.grad, "cumsum.grad_x", rtol: tol.rtol, atol: tol.atol)
    }

    @Test func logsumexp() throws {
        let x = try g("logsumexp.x").requiringGrad()
        let out = try x.logsumexp(axes: [1])
        #expect(out.shape == [3])
        try (out * g("logsumexp.upstream")).sum().backward()
        let tol = Self.lse
        try expectClose(out, "logsumexp.out", rtol: tol.rtol, atol: tol.atol)
        try expectClose(x.grad, "logsumexp.grad_x", rtol: tol.rtol, atol: tol.atol)
    }
}
