import Testing
@testable import TandemCore
import TandemTestSupport

/// The fused block's batch statistics and gradients against the same block in float64, each
/// judged by a bound derived from the arithmetic and the magnitudes involved (no tolerance
/// tuned on one CPU). On an AVX2 CPU, oneDNN's own batch norm missed these bounds by far
/// (means off by 1.1e-5 relative); `ONEDNN_MAX_CPU_ISA` selects the ISA (scripts/isa_matrix.sh).
@Suite struct ConvBlockAccuracyTests {
    /// Unit roundoff of float32.
    static let u = 0x1p-24

    /// γ_n = n·u / (1 − n·u): the worst-case relative error of n float32 operations in a row
    /// (Higham, Accuracy and Stability of Numerical Algorithms, §3.1).
    static func gamma(_ n: Int) -> Double { Double(n) * u / (1 - Double(n) * u) }

    struct Case: Sendable, CustomStringConvertible {
        var inChannels: Int, outChannels: Int, size: Int
        var description: String { "N64 \(inChannels)→\(outChannels) \(size)×\(size) k5 p2" }
    }

    /// The MNIST ConvNet's two blocks at its training batch size.
    static let cases = [Case(inChannels: 1, outChannels: 16, size: 28), Case(inChannels: 16, outChannels: 32, size: 14)]

    /// Per-channel mean over `[N, C, H, W]` as Doubles.
    private func channelMean(_ t: Tensor) throws -> [Double] { try t.mean(axes: [0, 2, 3]).toDoubleArray() }

    @Test(arguments: cases) func statisticsAndGradientsWithinTheirBounds(c: Case) throws {
        let g = Generator(seed: 5)
        let x = Tensor.uniform([64, c.inChannels, c.size, c.size], low: 0, high: 1, generator: g)
        let k = c.inChannels * 25
        let w = try Tensor.randn([c.outChannels, c.inChannels, 5, 5], generator: g) * (1 / Double(k).squareRoot())
        let b = try Tensor.randn([c.outChannels], generator: g) * 0.1 + 0.3
        let gamma = try Tensor.randn([c.outChannels], generator: g) * 0.2 + 1
        let beta = try Tensor.randn([c.outChannels], generator: g) * 0.2
        let upstream = Tensor.randn([64, c.outChannels, c.size / 2, c.size / 2], generator: g)

        let leaves = [w, b, gamma, beta].map { $0.requiringGrad() }
        let fused = try #require(Tensor.fusedConvBatchNormReLUMaxPool(
            x, weight: leaves[0], bias: leaves[1], stride: [1], padding: [2], normWeight: leaves[2], normBias: leaves[3],
            eps: 1e-5, poolKernel: [2], poolStride: [2], poolPadding: [0]), "fused path refused \(c)")
        try fused.output.backward(upstream)

        // The same block in float64 from the same float32 values, stopping at the batch norm's
        // output to read its gradient g' (zero where the ReLU was off).
        let x64 = x.to(.float64), (gamma64, beta64) = (gamma.to(.float64), beta.to(.float64))
        let y = try Tensor.conv2d(x64, weight: w.to(.float64), bias: b.to(.float64), padding: [2])
        var none: Tensor? = nil, noneVar: Tensor? = nil
        let z = try Tensor.batchNorm(y, runningMean: &none, runningVar: &noneVar, weight: gamma64, bias: beta64,
                                     training: true, momentum: 0.1, eps: 1e-5).requiringGrad()
        try z.relu().maxPool2d(kernelSize: [2]).backward(upstream.to(.float64))
        let gPrime = try #require(z.grad)

        // Each float32 convolution output is a sum of K + 1 products (bias included), so it is
        // off by at most γ_{K+1}·A, A = |w| ∗ |x| + |b| (any summation order). The statistics
        // kernel sums d = y − S (S: the first image's mean, rounded) and d² in float32, at most
        // 32 values per lane before it flushes to Double: Σd and Σd² are off by γ_33·Σ|d| and
        // γ_35·Σd², and the variance Σd²/M − (Σd/M)² by those plus 2·|μ − S|·γ_33·mean|d|.
        let a = try Tensor.conv2d(x64.abs(), weight: w.to(.float64).abs(), bias: b.to(.float64).abs(), padding: [2])
        let convError = try a * Self.gamma(k + 1)
        let mean64 = try channelMean(y), meanAbs = try channelMean(y.abs()), meanConvError = try channelMean(convError)
        let centered = try y - Tensor(mean64, shape: [1, c.outChannels, 1, 1], dtype: .float64)
        let variance64 = try channelMean(centered * centered)
        let varianceConvError = try channelMean(centered.abs() * convError)
        let meanAbsCentered = try channelMean(centered.abs())
        let firstImageMean = try y.narrow(axis: 0, start: 0, length: 1).mean(axes: [0, 2, 3]).toDoubleArray()
        var worst = (mean: 0.0, variance: 0.0)
        for ch in 0..<c.outChannels {
            let shift = abs(mean64[ch] - firstImageMean[ch]) + meanConvError[ch]  // |μ − S|, S as the kernel has it
            let meanAbsShifted = meanAbsCentered[ch] + shift  // mean|d|
            let meanBound = meanConvError[ch] + Self.gamma(33) * meanAbsShifted + Self.u * abs(mean64[ch])
            let varianceBound = 2 * varianceConvError[ch] + meanConvError[ch] * meanConvError[ch]
                + Self.gamma(36) * (variance64[ch] + shift * shift) + 2 * shift * Self.gamma(33) * meanAbsShifted
            let meanError = abs(fused.mean[ch] - mean64[ch]), varianceError = abs(fused.variance[ch] - variance64[ch])
            #expect(meanError <= meanBound, "channel \(ch) mean \(fused.mean[ch]) vs \(mean64[ch]) (bound \(meanBound))")
            #expect(varianceError <= varianceBound,
                    "channel \(ch) variance \(fused.variance[ch]) vs \(variance64[ch]) (bound \(varianceBound))")
            worst.mean = max(worst.mean, meanError / meanAbs[ch])
            worst.variance = max(worst.variance, varianceError / variance64[ch])
        }
        print("fused-statistics-error \(c): mean \(worst.mean) of mean|y|, variance \(worst.variance) relative")

        // The convolution bias's gradient is analytically zero (a training-mode batch norm
        // follows): Σ dy over the M = N·H·W values of a channel, dy = k1·g' + (y − μ)·k2 + k3 with
        // k1 = γ·σ⁻¹, k2 = −k1·σ⁻²·Σg'(y − μ)/M, k3 = −k1·Σg'/M, cancels exactly. What is left
        // is rounding: each dy (a few float32 operations) and their sum (any order) are off by at
        // most (γ_8 + γ_M)·T, T = |k1|·Σ|g'| + |k2|·Σ|y − μ| + M·|k3|, the size of the terms that
        // cancel; and an error δμ in the mean leaves |k2|·M·δμ.
        let m = 64 * c.size * c.size
        let sumAbsG = try gPrime.abs().sum(axes: [0, 2, 3]).toDoubleArray()
        let sumG = try gPrime.sum(axes: [0, 2, 3]).toDoubleArray()
        let sumGX = try (gPrime * centered).sum(axes: [0, 2, 3]).toDoubleArray()
        let sumAbsCentered = try centered.abs().sum(axes: [0, 2, 3]).toDoubleArray()
        let gammas = gamma64.toDoubleArray()
        let biasGrad = try #require(leaves[1].grad).toDoubleArray()
        var worstBias = 0.0
        for ch in 0..<c.outChannels {
            let invstd = 1 / (variance64[ch] + 1e-5).squareRoot()
            let k1 = abs(gammas[ch] * invstd), k2 = k1 * invstd * invstd * abs(sumGX[ch]) / Double(m)
            let k3 = k1 * abs(sumG[ch]) / Double(m)
            let terms = k1 * sumAbsG[ch] + k2 * sumAbsCentered[ch] + Double(m) * k3
            let meanBound = meanConvError[ch] + Self.u * abs(mean64[ch])
                + Self.gamma(33) * (meanAbsCentered[ch] + meanConvError[ch] + abs(mean64[ch] - firstImageMean[ch]))
            let bound = (Self.gamma(8) + Self.gamma(m)) * terms + k2 * Double(m) * meanBound
            #expect(abs(biasGrad[ch]) <= bound, "channel \(ch): conv bias gradient \(biasGrad[ch]) (bound \(bound))")
            worstBias = max(worstBias, abs(biasGrad[ch]) / terms)
        }
        print("fused-bias-gradient \(c): |Σ dy| up to \(worstBias) of the terms that cancel")
    }

    /// The statistics shift by the first image's mean; with that image far from the batch's mean
    /// (all zeros among 63 bright images, which also sends the kernel through its second pass),
    /// the variance keeps the accuracy of one taken around the mean: γ_36 of it, no shift term.
    @Test func statisticsStayAccurateWhenTheFirstImageIsAnOutlier() throws {
        let g = Generator(seed: 9)
        var x = try Tensor.uniform([64, 1, 12, 12], low: 0, high: 1, generator: g) + 20
        try x.withUnsafeMutableBufferPointer(as: Float.self) { p in for i in 0..<144 { p[i] = 0 } }
        let w = try Tensor.randn([8, 1, 5, 5], generator: g).abs() * 0.2
        let b = Tensor.zeros([8]), gamma = Tensor.ones([8]), beta = Tensor.zeros([8])
        let fused = try #require(Tensor.fusedConvBatchNormReLUMaxPool(
            x, weight: w, bias: b, stride: [1], padding: [2], normWeight: gamma, normBias: beta, eps: 1e-5,
            poolKernel: [2], poolStride: [2], poolPadding: [0]))
        let y = try Tensor.conv2d(x.to(.float64), weight: w.to(.float64), bias: b.to(.float64), padding: [2])
        let a = try Tensor.conv2d(x.to(.float64).abs(), weight: w.to(.float64).abs(), bias: nil, padding: [2])
        let convError = try channelMean(a * Self.gamma(26))
        let mean = try channelMean(y)
        let centered = try y - Tensor(mean, shape: [1, 8, 1, 1], dtype: .float64)
        let variance = try channelMean(centered * centered), varianceConvError = try channelMean(centered.abs() * (a * Self.gamma(26)))
        let first = try y.narrow(axis: 0, start: 0, length: 1).mean(axes: [0, 2, 3]).toDoubleArray()
        for ch in 0..<8 {
            #expect((mean[ch] - first[ch]) * (mean[ch] - first[ch]) > 4 * variance[ch], "channel \(ch): the first image is no outlier")
            let bound = 2 * varianceConvError[ch] + convError[ch] * convError[ch] + Self.gamma(36) * variance[ch]
            #expect(abs(fused.variance[ch] - variance[ch]) <= bound,
                    "channel \(ch): variance \(fused.variance[ch]) vs \(variance[ch]) (bound \(bound))")
        }
    }
}
