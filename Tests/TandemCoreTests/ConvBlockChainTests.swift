import Testing
@testable import TandemCore
import TandemTestSupport

/// `Tensor.fusedConvBlocks` with several blocks in a row (their outputs passed in oneDNN's
/// layout) against the operations one by one.
@Suite struct ConvBlockChainTests {
    struct Block: Sendable, CustomStringConvertible {
        var outChannels: Int, kernel: Int, padding: Int, stride: Int, hasBias: Bool
        var poolKernel: Int, poolStride: Int, poolPadding: Int
        var description: String { "→\(outChannels) k\(kernel) p\(padding) s\(stride) pool k\(poolKernel) s\(poolStride) p\(poolPadding)" }
    }

    struct Case: Sendable, CustomStringConvertible {
        var batch: Int, inChannels: Int, height: Int, width: Int, inputGrad: Bool
        var blocks: [Block]
        var description: String { "N\(batch) \(inChannels) \(height)×\(width) " + blocks.map(\.description).joined(separator: " ") }
    }

    static let cases: [Case] = [
        // The MNIST ConvNet's two blocks (smaller batch); its input takes no gradient.
        Case(batch: 8, inChannels: 1, height: 28, width: 28, inputGrad: false, blocks: [
            Block(outChannels: 16, kernel: 5, padding: 2, stride: 1, hasBias: true, poolKernel: 2, poolStride: 2, poolPadding: 0),
            Block(outChannels: 32, kernel: 5, padding: 2, stride: 1, hasBias: true, poolKernel: 2, poolStride: 2, poolPadding: 0),
        ]),
        // Three blocks, an input gradient, no bias, odd sizes, a stride, overlapping padded windows.
        Case(batch: 3, inChannels: 3, height: 13, width: 11, inputGrad: true, blocks: [
            Block(outChannels: 16, kernel: 3, padding: 1, stride: 1, hasBias: false, poolKernel: 3, poolStride: 2, poolPadding: 1),
            Block(outChannels: 32, kernel: 3, padding: 1, stride: 2, hasBias: true, poolKernel: 2, poolStride: 1, poolPadding: 0),
            Block(outChannels: 16, kernel: 1, padding: 0, stride: 1, hasBias: true, poolKernel: 2, poolStride: 1, poolPadding: 1),
        ]),
    ]

    /// Each block's convolution weight and bias, batch-norm weight and bias, as leaves.
    private func parameters(_ c: Case, _ g: Generator) throws -> [[Tensor?]] {
        var channels = c.inChannels
        return try c.blocks.map { b in
            defer { channels = b.outChannels }
            let w = try Tensor.randn([b.outChannels, channels, b.kernel, b.kernel], generator: g)
                * (1 / Double(channels * b.kernel * b.kernel).squareRoot())
            let bias = b.hasBias ? try Tensor.randn([b.outChannels], generator: g) * 0.1 : nil
            return [w, bias, try Tensor.randn([b.outChannels], generator: g) * 0.2 + 1, try Tensor.randn([b.outChannels], generator: g) * 0.2]
        }
    }

    private func operands(_ c: Case, _ p: [[Tensor?]], running: [(Tensor, Tensor)]? = nil) -> [ConvBlockOperands] {
        zip(c.blocks, p).enumerated().map { i, pair in
            let (b, t) = pair
            return ConvBlockOperands(weight: t[0]!, bias: t[1], stride: [b.stride], padding: [b.padding], normWeight: t[2]!,
                                     normBias: t[3]!, eps: 1e-5, poolKernel: [b.poolKernel], poolStride: [b.poolStride],
                                     poolPadding: [b.poolPadding], running: running.map { ($0[i].0, $0[i].1) })
        }
    }

    /// The operations one by one; `statistics` collects each block's running mean and variance
    /// after one update with momentum 1 (the batch mean and unbiased variance), or uses them.
    private func layers(_ x: Tensor, _ c: Case, _ p: [[Tensor?]], training: Bool,
                        statistics: inout [(Tensor?, Tensor?)]) throws -> Tensor {
        var y = x
        for (i, (b, t)) in zip(c.blocks, p).enumerated() {
            let convolved = try Tensor.conv2d(y, weight: t[0]!, bias: t[1], stride: [b.stride], padding: [b.padding])
            var (mean, variance) = statistics[i]
            y = try Tensor.batchNorm(convolved, runningMean: &mean, runningVar: &variance, weight: t[2]!,
                                     bias: t[3]!, training: training, momentum: 1, eps: 1e-5)
                .relu().maxPool2d(kernelSize: [b.poolKernel], stride: [b.poolStride], padding: [b.poolPadding])
            statistics[i] = (mean, variance)
        }
        return y
    }

    @Test(.enabled(if: ISA.oneDNNChainsConvBlocks, "oneDNN's layouts chain only from AVX2 up (ISA.oneDNNChainsConvBlocks)"), arguments: cases) func matchesTheOperationsOneByOne(c: Case) throws {
        let g = Generator(seed: 31)
        let x = Tensor.randn([c.batch, c.inChannels, c.height, c.width], generator: g)
        let values = try parameters(c, g)
        func leaves() -> (Tensor, [[Tensor?]]) {
            (x.requiringGrad(c.inputGrad), values.map { $0.map { $0?.requiringGrad() } })
        }
        let (fx, fp) = leaves(), (px, pp) = leaves()
        let fused = try #require(Tensor.fusedConvBlocks(fx, operands(c, fp)), "fused path refused \(c)")
        var statistics: [(Tensor?, Tensor?)] = c.blocks.map { (Tensor.zeros([$0.outChannels]), Tensor.ones([$0.outChannels])) }
        let plain = try layers(px, c, pp, training: true, statistics: &statistics)
        #expect(Closeness.mismatch(fused.output, plain, rtol: 1e-4, atol: 1e-5, "output") == nil, "\(c)")
        for (i, s) in fused.statistics.enumerated() {
            let n = Double(s.count), channels = c.blocks[i].outChannels
            #expect(Closeness.mismatch(Tensor(s.mean, shape: [channels]), statistics[i].0!, rtol: 1e-4, atol: 1e-5, "mean \(i)") == nil)
            #expect(Closeness.mismatch(Tensor(s.variance.map { $0 * n / (n - 1) }, shape: [channels]), statistics[i].1!,
                                       rtol: 1e-4, atol: 1e-5, "variance \(i)") == nil)
        }

        let upstream = Tensor.randn(plain.shape, generator: g)
        try fused.output.backward(upstream)
        try plain.backward(upstream)
        if c.inputGrad {
            #expect(Closeness.mismatch(try #require(fx.grad), try #require(px.grad), rtol: 1e-3, atol: 2e-4, "input") == nil)
        } else {
            #expect(fx.grad == nil)
        }
        let names = ["weight", "bias", "bn weight", "bn bias"]
        for (i, (a, e)) in zip(fp, pp).enumerated() {
            for (name, (ta, te)) in zip(names, zip(a, e)) {
                guard let ta, let te else { continue }
                let ga = try #require(ta.grad, "\(name) \(i)"), ge = try #require(te.grad, "\(name) \(i)")
                #expect(Closeness.mismatch(ga, ge, rtol: 1e-3, atol: 2e-4, "block \(i) \(name)") == nil, "\(c)")
            }
        }
    }

    /// Evaluation: the running statistics, no gradient recorded.
    @Test(.enabled(if: ISA.oneDNNChainsConvBlocks, "oneDNN's layouts chain only from AVX2 up (ISA.oneDNNChainsConvBlocks)"), arguments: cases) func inferenceMatchesTheOperationsOneByOne(c: Case) throws {
        let g = Generator(seed: 37)
        let x = Tensor.randn([c.batch, c.inChannels, c.height, c.width], generator: g)
        let p = try parameters(c, g)
        let running = try c.blocks.map { b in
            (try Tensor.randn([b.outChannels], generator: g) * 0.3, Tensor.uniform([b.outChannels], low: 0.5, high: 1.5, generator: g))
        }
        try Tensor.withNoGrad {
            let fused = try #require(Tensor.fusedConvBlocks(x, operands(c, p, running: running), training: false),
                                     "fused inference refused \(c)")
            var statistics: [(Tensor?, Tensor?)] = running.map { ($0.0, $0.1) }
            let plain = try layers(x, c, p, training: false, statistics: &statistics)
            #expect(Closeness.mismatch(fused.output, plain, rtol: 1e-4, atol: 1e-5, "output") == nil, "\(c)")
        }
    }

    /// An inf or NaN in a later block's operands declines the whole row, in training and in
    /// evaluation; no blocks at all decline too.
    @Test(.enabled(if: ISA.oneDNNChainsConvBlocks, "oneDNN's layouts chain only from AVX2 up (ISA.oneDNNChainsConvBlocks)")) func declinesInfAndNaNInALaterBlock() throws {
        let c = Self.cases[0]
        let g = Generator(seed: 41)
        let x = Tensor.randn([c.batch, c.inChannels, c.height, c.width], generator: g)
        var p = try parameters(c, g)
        let running = c.blocks.map { (Tensor.zeros([$0.outChannels]), Tensor.ones([$0.outChannels])) }
        Tensor.withNoGrad {
            #expect(Tensor.fusedConvBlocks(x, operands(c, p)) != nil)
            #expect(Tensor.fusedConvBlocks(x, operands(c, p, running: running), training: false) != nil)
            var gamma = p[1][2]!.toFloatArray()
            gamma[3] = .nan
            p[1][2] = Tensor(gamma, shape: [gamma.count])
            #expect(Tensor.fusedConvBlocks(x, operands(c, p)) == nil, "training")
            #expect(Tensor.fusedConvBlocks(x, operands(c, p, running: running), training: false) == nil, "evaluation")
            #expect(Tensor.fusedConvBlocks(x, []) == nil)
        }
    }
}
