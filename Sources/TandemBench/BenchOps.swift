import ArgumentParser
import Foundation
import TandemCore
import TandemModels

/// `tandem bench ops`: times the core kernels with 1 and 2 threads. The same cases run in
/// PyTorch with Benchmarks/pytorch/ops.py; Benchmarks/compare.py prints the ratios.
/// Opt-in cases run only when `--filter` names them: `--filter ssd` times Mamba-2's chunked
/// SSD (against Benchmarks/pytorch/ssd.py).
struct BenchOps: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ops", abstract: "Time core ops (forward and backward).")

    @Flag(help: "Print one JSON object per case.") var json = false
    @Option(help: "Comma-separated thread counts.") var threads: String = "1,2"
    @Option(help: "Only cases whose name contains this text (\"ssd\" adds the opt-in SSD cases).") var filter: String?
    @Option(help: "Minimum seconds of timed runs per case.") var seconds: Double = 0.5

    func validate() throws {
        guard !threadCounts.isEmpty, threadCounts.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--threads must list positive integers, e.g. 1,2")
        }
    }

    var threadCounts: [Int] { threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        let optIn = filter.map { $0.contains("ssd") } == true ? BenchCases.ssd() : []
        let cases = try (BenchCases.all() + optIn).filter { filter == nil || $0.name.contains(filter!) }
        for n in threadCounts {
            Tandem.setNumThreads(n)
            for c in cases {
                let ms = try BenchCases.time(seconds: seconds, c.body)
                if json {
                    print("{\"case\":\"\(c.name)\",\"threads\":\(n),\"ms\":\(String(format: "%.4f", ms)),\"framework\":\"tandem\"}")
                } else {
                    print(String(format: "%-28@ threads %d  %9.3f ms", c.name as NSString, n, ms))
                }
                fflush(nil)
            }
        }
    }
}

/// The benchmark cases (keep in step with Benchmarks/pytorch/ops.py).
enum BenchCases {
    struct Case {
        let name: String
        let body: () throws -> Void
    }

    static func all() throws -> [Case] {
        let g = Generator(seed: 0)
        var cases: [Case] = []
        for n in [512, 1024] {
            let a = Tensor.randn([n, n], generator: g), b = Tensor.randn([n, n], generator: g)
            cases.append(Case(name: "sgemm_\(n)") { _ = try Tensor.matmul(a, b) })
        }
        for (name, cin, cout, hw) in [("conv_mnist1_fwd_bwd", 1, 16, 28), ("conv_mnist2_fwd_bwd", 16, 32, 14)] {
            let x = Tensor.randn([64, cin, hw, hw], generator: g)
            let w = Tensor.randn([cout, cin, 5, 5], generator: g), b = Tensor.randn([cout], generator: g)
            let up = Tensor.randn([64, cout, hw, hw], generator: g)
            // The first layer's input needs no gradient (as in training); the second's does.
            let input = cin > 1 ? x.requiringGrad() : x
            cases.append(Case(name: name) {
                let out = try Tensor.conv2d(input, weight: w.requiringGrad(), bias: b.requiringGrad(), padding: [2])
                try out.backward(up)
            })
        }
        let gemmA = Tensor.randn([256, 1024], generator: g), gemmB = Tensor.randn([1024, 1024], generator: g)
        cases.append(Case(name: "gemm_256x1024x1024") { _ = try Tensor.matmul(gemmA, gemmB) })
        cases.append(convBlocksCase(g))
        let poolInput = Tensor.randn([64, 16, 28, 28], generator: g), poolUp = Tensor.randn([64, 16, 14, 14], generator: g)
        cases.append(Case(name: "maxpool_64x16x28x28_fwd_bwd") {
            try poolInput.requiringGrad().maxPool2d(kernelSize: [2]).backward(poolUp)
        })
        for (name, shape) in [("bn_stats_64x16x28x28", [64, 16, 28, 28]), ("bn_stats_64x32x14x14", [64, 32, 14, 14])] {
            let x = Tensor.randn(shape, generator: g)
            cases.append(Case(name: name) {
                _ = try x.mean(axes: [0, 2, 3])
                _ = try x.variance(axes: [0, 2, 3], correction: 0)
            })
        }
        let logits = Tensor.randn([256, 1000], generator: g)
        let upstream = Tensor.randn([256, 1000], generator: g)
        cases.append(Case(name: "log_softmax_256x1000_fwd") { _ = try logits.logSoftmax(axis: 1) })
        cases.append(Case(name: "log_softmax_256x1000_fwd_bwd") {
            let x = logits.requiringGrad()
            let y = try x.logSoftmax(axis: 1)
            try y.backward(upstream)
        })
        let big1 = Tensor.randn([1 << 24], generator: g), big2 = Tensor.randn([1 << 24], generator: g)
        for l in [256, 1024, 4096] {
            let (q, k, v) = ([1, 8, l, 64], [1, 8, l, 64], [1, 8, l, 64])
            let qt = Tensor.randn(q, generator: g).requiringGrad(), kt = Tensor.randn(k, generator: g).requiringGrad()
            let vt = Tensor.randn(v, generator: g).requiringGrad(), up = Tensor.randn(q, generator: g)
            cases.append(Case(name: "attention_causal_b1_h8_l\(l)_d64_fwd_bwd") {
                try Tensor.scaledDotProductAttention(qt, kt, vt, isCausal: true).backward(up)
            })
        }
        cases.append(Case(name: "add_16M") { _ = try big1 + big2 })
        cases.append(Case(name: "mul_16M") { _ = try big1 * big2 })
        cases.append(Case(name: "relu_16M") { _ = try big1.relu() })
        cases.append(Case(name: "exp_16M") { _ = try big1.exp() })
        return try cases + ctcCases(g)
    }

    /// The MNIST ConvNet's two `Conv2d → BatchNorm2d → ReLU → MaxPool2d` blocks in training
    /// mode, forward and backward, batch 64: the fused path (`Tensor.fusedConvBlocks`).
    static func convBlocksCase(_ g: Generator) -> Case {
        let x = Tensor.randn([64, 1, 28, 28], generator: g)
        let blocks = [(1, 16), (16, 32)].map { cin, cout in
            ConvBlockOperands(weight: Tensor.randn([cout, cin, 5, 5], generator: g).requiringGrad(),
                              bias: Tensor.randn([cout], generator: g).requiringGrad(), stride: [1], padding: [2],
                              normWeight: Tensor.ones([cout]).requiringGrad(), normBias: Tensor.zeros([cout]).requiringGrad(),
                              eps: 1e-5, poolKernel: [2], poolStride: [2], poolPadding: [0])
        }
        let up = Tensor.randn([64, 32, 7, 7], generator: g)
        return Case(name: "convblocks_mnist_train_fwd_bwd") {
            guard let fused = Tensor.fusedConvBlocks(x, blocks) else { throw TensorError.invalidArgument(op: "bench", message: "not fused") }
            try fused.output.backward(up)
        }
    }

    /// CTC loss forward + backward (mean reduction) on float32 log-probabilities, full-length
    /// inputs and targets (as Benchmarks/pytorch/ctc.py).
    static func ctcCases(_ g: Generator) throws -> [Case] {
        try [(200, 16, 30, 40), (1000, 4, 60, 200)].map { t, n, c, s in
            let logProbs = try Tensor.randn([t, n, c], generator: g).logSoftmax(axis: 2)
            let labels = (0..<(n * s)).map { 1 + ($0 / s * 131 + $0 % s * 17) % (c - 1) }
            let targets = Tensor(int64: labels, shape: [n, s])
            let inputLengths = [Int](repeating: t, count: n), targetLengths = [Int](repeating: s, count: n)
            return Case(name: "ctc_T\(t)_N\(n)_C\(c)_S\(s)_fwd_bwd") {
                let loss = try Tensor.ctcLoss(logProbs: logProbs.requiringGrad(), targets: targets,
                                              inputLengths: inputLengths, targetLengths: targetLengths)
                try loss.backward()
            }
        }
    }

    /// Median milliseconds per call over at least `seconds` of runs (after 2 warm-up calls).
    static func time(seconds: Double, _ body: () throws -> Void) throws -> Double {
        try body(); try body()
        var samples: [Double] = []
        let start = DispatchTime.now().uptimeNanoseconds
        while samples.count < 5 || (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < seconds && samples.count < 1000) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        samples.sort()
        return samples[samples.count / 2]
    }
}

extension BenchCases {
    /// Opt-in: Mamba-2's chunked SSD (float32, chunk 64, h 8, p 64, n 64), forward alone and
    /// forward + backward to x, a, b, c, for (b 2, l 1024) and (b 1, l 4096). Keep in step with
    /// Benchmarks/pytorch/ssd.py.
    static func ssd() -> [Case] {
        let g = Generator(seed: 1)
        var cases: [Case] = []
        for (batch, length) in [(2, 1024), (1, 4096)] {
            let (h, p, n) = (8, 64, 64)
            let x = Tensor.randn([batch, length, h, p], generator: g)
            let a = Tensor.uniform([batch, length, h], low: -0.1, high: -0.001, generator: g)
            let b = Tensor.randn([batch, length, h, n], generator: g), c = Tensor.randn([batch, length, h, n], generator: g)
            let up = Tensor.randn([batch, length, h, p], generator: g)
            let name = "ssd_b\(batch)_l\(length)_h\(h)_p\(p)_n\(n)"
            cases.append(Case(name: name + "_fwd") {
                _ = try Tensor.withNoGrad { try TandemModels.ssd(x: x, a: a, b: b, c: c, blockLength: 64) }
            })
            cases.append(Case(name: name + "_fwd_bwd") {
                let (y, _) = try TandemModels.ssd(x: x.requiringGrad(), a: a.requiringGrad(), b: b.requiringGrad(),
                                                  c: c.requiringGrad(), blockLength: 64)
                try y.backward(up)
            })
        }
        return cases
    }
}
