import Testing
import TandemCore
import TandemNN
import TandemOptim

/// GradScaler: scaling, overflow skip and backoff, growth, idempotent unscale, state.
@Suite struct GradScalerTests {
    /// A parameter with loss `sum(w · factor)`, so that its gradient is `factor` everywhere.
    func setup() throws -> (Parameter, SGD) {
        let p = Parameter(Tensor([1, 2, 3] as [Float], shape: [3]))
        return (p, try SGD([p], lr: 0.5))
    }

    func backward(_ scaler: GradScaler, _ p: Parameter, factor: Float) throws {
        let loss = try (p.value * Tensor([factor, factor, factor], shape: [3])).sum()
        try scaler.scale(loss).backward()
    }

    @Test func finiteStepUnscalesAndSteps() throws {
        let (p, opt) = try setup()
        let scaler = try GradScaler()
        try backward(scaler, p, factor: 0.25)
        #expect(p.grad?.toFloatArray() == [16384, 16384, 16384])  // 0.25 · 65536
        #expect(try scaler.step(opt))
        #expect(p.grad?.toFloatArray() == [0.25, 0.25, 0.25])
        #expect(p.value.toFloatArray() == [0.875, 1.875, 2.875])
        scaler.update()
        #expect(scaler.scale == 65536)
        #expect(scaler.growthTracker == 1)
    }

    @Test func overflowSkipsTheStepAndHalvesTheScale() throws {
        let (p, opt) = try setup()
        let scaler = try GradScaler()
        // 1e35 · 65536 overflows float32: the scaled loss and gradients are inf.
        try backward(scaler, p, factor: 1e35)
        #expect(try !scaler.step(opt))
        #expect(p.value.toFloatArray() == [1, 2, 3])   // untouched
        scaler.update()
        #expect(scaler.scale == 32768)
        #expect(scaler.growthTracker == 0)
        // A NaN gradient is skipped too.
        opt.zeroGrad()
        try p.value.setGrad(Tensor([0, .nan, 0] as [Float], shape: [3]))
        #expect(try !scaler.step(opt))
        scaler.update()
        #expect(scaler.scale == 16384)
        #expect(p.value.toFloatArray() == [1, 2, 3])
    }

    @Test func scaleGrowsAfterTheInterval() throws {
        let (p, opt) = try setup()
        let scaler = try GradScaler(initScale: 8, growthInterval: 3)
        for i in 1...7 {
            opt.zeroGrad()
            try backward(scaler, p, factor: 1)
            try scaler.step(opt)
            scaler.update()
            #expect(scaler.scale == (i < 3 ? 8 : i < 6 ? 16 : 32))
        }
        // No unscale or step since the last update: update() changes nothing.
        scaler.update()
        #expect(scaler.scale == 32 && scaler.growthTracker == 1)
    }

    @Test func unscaleIsIdempotentPerStep() throws {
        let (p, opt) = try setup()
        let scaler = try GradScaler(initScale: 4)
        try backward(scaler, p, factor: 3)
        #expect(try !scaler.unscale(opt))
        #expect(p.grad?.toFloatArray() == [3, 3, 3])
        try scaler.unscale(opt)                          // second call: no further division
        #expect(p.grad?.toFloatArray() == [3, 3, 3])
        try ClipGrad.clipGradNorm(opt.parameters, maxNorm: 1)
        try scaler.step(opt)                             // does not unscale again
        let g = try #require(p.grad).toFloatArray()
        #expect(Swift.abs(g[0] - 1 / Float(3).squareRoot()) < 1e-5)
        scaler.update()
        opt.zeroGrad()
        try backward(scaler, p, factor: 3)
        try scaler.unscale(opt)                          // a new step unscales again
        #expect(p.grad?.toFloatArray() == [3, 3, 3])
    }

    @Test func disabledIsAPassThrough() throws {
        let (p, opt) = try setup()
        let scaler = try GradScaler(enabled: false)
        try backward(scaler, p, factor: 2)
        #expect(p.grad?.toFloatArray() == [2, 2, 2])
        #expect(try scaler.step(opt))
        scaler.update()
        #expect(p.value.toFloatArray() == [0, 1, 2])
        #expect(scaler.stateDict().isEmpty)
    }

    @Test func stateRoundTrip() throws {
        let (p, opt) = try setup()
        let a = try GradScaler(initScale: 1024, growthInterval: 10)
        for _ in 0..<3 { opt.zeroGrad(); try backward(a, p, factor: 1); try a.step(opt); a.update() }
        opt.zeroGrad(); try backward(a, p, factor: 1e38); try a.step(opt); a.update()
        opt.zeroGrad(); try backward(a, p, factor: 1); try a.step(opt); a.update()
        #expect(a.scale == 512 && a.growthTracker == 1)
        let state = Dictionary(uniqueKeysWithValues: a.stateDict())
        #expect(Set(state.keys) == ["scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"])
        let b = try GradScaler(growthInterval: 10)
        try b.loadStateDict(state)
        #expect(b.scale == 512 && b.growthTracker == 1)
        #expect(throws: TensorError.self) { try b.loadStateDict([:]) }
    }

    @Test func invalidArgumentsThrow() {
        #expect(throws: TensorError.self) { try GradScaler(initScale: 0) }
        #expect(throws: TensorError.self) { try GradScaler(growthFactor: 1) }
        #expect(throws: TensorError.self) { try GradScaler(backoffFactor: 1) }
        #expect(throws: TensorError.self) { try GradScaler(growthInterval: 0) }
    }
}
