import Testing
import TandemNN
import TandemOptim
import TandemTestSupport

/// Optimizer trajectories and schedules against PyTorch (optim_schedules.safetensors).
@Suite struct OptimizerGoldenTests {
    static let golden = try! Golden.load("optim_schedules")

    func make(_ name: String, _ p: Parameter) throws -> any Optimizer {
        switch name {
        case "sgd": return try SGD([p], lr: 0.1)
        case "sgd_momentum": return try SGD([p], lr: 0.1, momentum: 0.9, weightDecay: 0.01)
        case "sgd_nesterov": return try SGD([p], lr: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true)
        case "adam": return try Adam([p], lr: 0.1)
        case "adam_wd": return try Adam([p], lr: 0.1, weightDecay: 0.01)
        case "adam_amsgrad": return try Adam([p], lr: 0.1, amsgrad: true)
        case "adamw": return try Adam.adamW([p], lr: 0.1)
        case "adamw_amsgrad": return try Adam.adamW([p], lr: 0.1, amsgrad: true)
        case "adam_b2fast": return try Adam([p], lr: 0.1, betas: (0.9, 0.9))
        case "adam_b2fast_amsgrad": return try Adam([p], lr: 0.1, betas: (0.9, 0.9), amsgrad: true)
        case "adamw_b2fast": return try Adam.adamW([p], lr: 0.1, betas: (0.9, 0.9))
        default: return try Adam.adamW([p], lr: 0.1, betas: (0.9, 0.9), amsgrad: true)
        }
    }

    @Test(arguments: ["sgd", "sgd_momentum", "sgd_nesterov", "adam", "adam_wd", "adam_amsgrad", "adamw", "adamw_amsgrad",
                      "adam_b2fast", "adam_b2fast_amsgrad", "adamw_b2fast", "adamw_b2fast_amsgrad"])
    func trajectories(name: String) throws {
        let g = Self.golden
        for source in ["quad", "given"] {
            let p = Parameter(try g.tensor("quad.p0"))
            let opt = try make(name, p)
            let expected = try g.tensor("\(source).\(name).params")
            let grads = try g.tensor(source == "quad" ? "quad.\(name).grads" : "given.grads")
            for t in 0..<5 {
                try p.value.setGrad(grads[t])
                try opt.step()
                let mismatch = Closeness.mismatch(p.value, try expected[t + 1], rtol: 1e-5, atol: name.hasPrefix("adam") ? 1e-5 : 1e-6, "\(source).\(name) step \(t + 1)")
                #expect(mismatch == nil, "\(mismatch ?? "")")
            }
        }
    }

    @Test func schedules() throws {
        let g = Self.golden
        func run(_ name: String, _ make: (any Optimizer) throws -> any LRSchedule) throws {
            let expected = try g.tensor("lr.\(name)").toDoubleArray()
            let opt = try SGD([Parameter(Tensor.zeros([1]))], lr: 0.1)
            let schedule = try make(opt)
            var rates = [opt.learningRate]
            for _ in 1..<expected.count { try opt.step(); schedule.step(); rates.append(opt.learningRate) }
            for (a, e) in zip(rates, expected) { #expect(Swift.abs(a - e) < 1e-12, "\(name): \(rates) vs \(expected)") }
        }
        try run("steplr") { try StepLR($0, stepSize: 2, gamma: 0.1) }
        try run("cosine") { try CosineAnnealingLR($0, tMax: 10) }
        try run("linear_warmup") { try LinearLR($0, startFactor: 0.1, endFactor: 1, totalIters: 12) }
    }

    @Test func badArgumentsAreTypedErrors() {
        let p = Parameter(Tensor.zeros([2]))
        #expect(throws: TensorError.self) { try SGD([p], lr: -1) }
        #expect(throws: TensorError.self) { try SGD([p], lr: 0.1, nesterov: true) }
        #expect(throws: TensorError.self) { try Adam([p], betas: (1.5, 0.9)) }
        #expect(throws: TensorError.self) { try StepLR(SGD([p], lr: 0.1), stepSize: 0) }
    }
}

@Suite struct ClipGradTests {
    @Test func clipsToMaxNormAndReportsTheOriginal() throws {
        let a = Parameter(Tensor.zeros([2])), b = Parameter(Tensor.zeros([1]))
        try a.value.setGrad(Tensor([3, 0] as [Float]))
        try b.value.setGrad(Tensor([4] as [Float]))
        let norm = try ClipGrad.clipGradNorm([a, b], maxNorm: 1)
        #expect(Swift.abs(norm - 5) < 1e-9)
        let clipped = (a.grad!.toDoubleArray() + b.grad!.toDoubleArray()).map { $0 * $0 }.reduce(0, +).squareRoot()
        #expect(Swift.abs(clipped - 1) < 1e-5)
        // Below the limit nothing changes.
        #expect(try ClipGrad.clipGradNorm([a, b], maxNorm: 10) < 1.0001)
        #expect(Swift.abs(a.grad!.toDoubleArray()[0] - 0.6) < 1e-5)
        try b.value.setGrad(Tensor([.infinity] as [Float]))
        #expect(throws: TensorError.self) { try ClipGrad.clipGradNorm([a, b], maxNorm: 1, errorIfNonfinite: true) }
    }
}
