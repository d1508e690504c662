import Testing
import Foundation
import TandemCore
import TandemTestSupport

/// CTC loss and decoders: golden values from `ctc.safetensors` (PyTorch 2.15), a float64
/// gradient check, decoders against brute force, and bad input.
@Suite struct CTCTests {
    let file: SafeTensors.File

    init() throws { file = try Golden.load("ctc") }

    func g(_ name: String) throws -> Tensor { try file.tensor(name) }

    /// Compares `actual` (reshaped to the golden shape when the counts agree) with the golden
    /// tensor `name` (converted to `actual`'s dtype is not needed: closeness is in float64).
    func expectClose(_ actual: Tensor?, _ name: String, rtol: Double, atol: Double,
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        if let message = try file.mismatch(actual, name, rtol: rtol, atol: atol) {
            Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        }
    }

    /// The README's tolerances: float64 and float32 (losses, gradients).
    static let f64 = (rtol: 1e-9, atol: 1e-12)
    static let f32Loss = (rtol: 1e-5, atol: 1e-5)
    static let f32Grad = (rtol: 1e-3, atol: 1e-4)

    struct Batch {
        var logits: Tensor, targets: Tensor, inputLengths: [Int], targetLengths: [Int]
    }

    func batch(_ prefix: String) throws -> Batch {
        Batch(logits: try g(prefix + "logits"), targets: try g(prefix + "targets"),
              inputLengths: try g(prefix + "input_lengths").toIntArray(),
              targetLengths: try g(prefix + "target_lengths").toIntArray())
    }

    /// The loss of `log_softmax(logits)` (in `dtype`) and, for `.mean`, d loss / d logits.
    func loss(_ b: Batch, _ reduction: Reduction, zeroInfinity: Bool = false, dtype: DType = .float64) throws -> (Tensor, Tensor?) {
        let logits = b.logits.to(dtype).requiringGrad()
        let loss = try Tensor.ctcLoss(logProbs: logits.logSoftmax(axis: 2), targets: b.targets, inputLengths: b.inputLengths,
                                      targetLengths: b.targetLengths, reduction: reduction, zeroInfinity: zeroInfinity)
        guard reduction == .mean else { return (loss, nil) }
        try loss.backward()
        return (loss, logits.grad)
    }

    // MARK: - Golden loss and gradient

    @Test func goldenMainBatchFloat64() throws {
        let b = try batch("")
        let tol = Self.f64
        try expectClose(try loss(b, .none).0, "loss_none", rtol: tol.rtol, atol: tol.atol)
        try expectClose(try loss(b, .sum).0, "loss_sum", rtol: tol.rtol, atol: tol.atol)
        let (mean, grad) = try loss(b, .mean)
        try expectClose(mean, "loss_mean", rtol: tol.rtol, atol: tol.atol)
        try expectClose(grad, "grad_mean", rtol: tol.rtol, atol: tol.atol)
        #expect(mean.dtype == .float64 && mean.shape == [])
    }

    @Test func goldenMainBatchFloat32() throws {
        let b = try batch("")
        let none = try loss(b, .none, dtype: .float32).0
        #expect(none.dtype == .float32 && none.shape == [4])
        try expectClose(none, "loss_none_f32", rtol: Self.f32Loss.rtol, atol: Self.f32Loss.atol)
        try expectClose(none, "loss_none", rtol: Self.f32Loss.rtol, atol: Self.f32Loss.atol)
        let (mean, grad) = try loss(b, .mean, dtype: .float32)
        try expectClose(mean, "loss_mean", rtol: Self.f32Loss.rtol, atol: Self.f32Loss.atol)
        try expectClose(grad, "grad_mean_f32", rtol: Self.f32Grad.rtol, atol: Self.f32Grad.atol)
        try expectClose(grad, "grad_mean", rtol: Self.f32Grad.rtol, atol: Self.f32Grad.atol)
    }

    /// Concatenated 1-D targets give the same losses as padded ones.
    @Test func concatenatedTargetsMatchPadded() throws {
        let b = try batch("")
        let padded = b.targets.toIntArray(), s = b.targets.shape[1]
        var flat: [Int] = []
        for (n, length) in b.targetLengths.enumerated() { flat += padded[(n * s)..<(n * s + length)] }
        let lp = try b.logits.logSoftmax(axis: 2)
        let loss = try Tensor.ctcLoss(logProbs: lp, targets: Tensor(int64: flat), inputLengths: b.inputLengths,
                                      targetLengths: b.targetLengths, reduction: .none)
        try expectClose(loss, "loss_none", rtol: Self.f64.rtol, atol: Self.f64.atol)
        // Lengths as tensors, as in PyTorch.
        let viaTensors = try Tensor.ctcLoss(logProbs: lp, targets: b.targets, inputLengths: Tensor(int64: b.inputLengths),
                                            targetLengths: Tensor(int64: b.targetLengths), reduction: .sum)
        try expectClose(viaTensors, "loss_sum", rtol: Self.f64.rtol, atol: Self.f64.atol)
    }

    /// Batch-major logits transposed to time-major (a non-contiguous view) give the golden
    /// loss, and the gradient arrives in the batch-major layout.
    @Test func transposedViewInput() throws {
        let b = try batch("")
        let batchMajor = try b.logits.transpose(0, 1).contiguous().requiringGrad()
        let logProbs = try batchMajor.logSoftmax(axis: 2).transpose(0, 1)
        #expect(!logProbs.isContiguous)
        let loss = try Tensor.ctcLoss(logProbs: logProbs, targets: b.targets,
                                      inputLengths: b.inputLengths, targetLengths: b.targetLengths)
        try loss.backward()
        try expectClose(loss, "loss_mean", rtol: Self.f64.rtol, atol: Self.f64.atol)
        try expectClose(try #require(batchMajor.grad).transpose(0, 1).contiguous(), "grad_mean", rtol: Self.f64.rtol, atol: Self.f64.atol)
    }

    /// Unbatched `[T, C]` input is a batch of one, with a gradient of shape `[T, C]`.
    @Test func unbatchedInput() throws {
        let b = try batch("")
        let one = try b.logits.narrow(axis: 1, start: 1, length: 1).reshape([12, 6]).requiringGrad()
        let length = b.targetLengths[1]
        let target = b.targets.toIntArray()[5..<(5 + length)].map { $0 }
        let loss = try Tensor.ctcLoss(logProbs: one.logSoftmax(axis: 1), targets: Tensor(int64: target),
                                      inputLengths: [b.inputLengths[1]], targetLengths: [length], reduction: .none)
        #expect(loss.shape == [])
        let expected = try g("loss_none").toDoubleArray()[1]
        #expect(Swift.abs(try loss.item() - expected) <= 1e-9 * Swift.abs(expected))
        try loss.backward()
        #expect(one.grad?.shape == [12, 6])
    }

    // MARK: - Infinite losses

    @Test(arguments: [DType.float64, .float32])
    func goldenInfiniteLosses(_ dtype: DType) throws {
        let b = try batch("inf.")
        let suffix = dtype == .float32 ? "_f32" : ""
        let lossTol = dtype == .float32 ? Self.f32Loss : Self.f64
        let gradTol = dtype == .float32 ? Self.f32Grad : Self.f64
        let none = try loss(b, .none, dtype: dtype).0
        #expect(none.toDoubleArray()[1] == .infinity)
        try expectClose(none, "inf.loss_none" + suffix, rtol: lossTol.rtol, atol: lossTol.atol)
        try expectClose(try loss(b, .sum, dtype: dtype).0, "inf.loss_sum", rtol: lossTol.rtol, atol: lossTol.atol)
        let (mean, grad) = try loss(b, .mean, dtype: dtype)
        try expectClose(mean, "inf.loss_mean", rtol: lossTol.rtol, atol: lossTol.atol)
        // NaN in the infeasible sample's frames, as in PyTorch; finite elsewhere.
        try expectClose(grad, "inf.grad_mean" + suffix, rtol: gradTol.rtol, atol: gradTol.atol)

        let noneZI = try loss(b, .none, zeroInfinity: true, dtype: dtype).0
        try expectClose(noneZI, "inf.loss_none_zi" + suffix, rtol: lossTol.rtol, atol: lossTol.atol)
        try expectClose(try loss(b, .sum, zeroInfinity: true, dtype: dtype).0, "inf.loss_sum_zi",
                        rtol: lossTol.rtol, atol: lossTol.atol)
        let (meanZI, gradZI) = try loss(b, .mean, zeroInfinity: true, dtype: dtype)
        try expectClose(meanZI, "inf.loss_mean_zi", rtol: lossTol.rtol, atol: lossTol.atol)
        try expectClose(gradZI, "inf.grad_mean_zi" + suffix, rtol: gradTol.rtol, atol: gradTol.atol)
        // The infeasible sample's gradient is exactly zero.
        let gz = try #require(gradZI).toDoubleArray()
        let (t, n, c) = (b.logits.shape[0], b.logits.shape[1], b.logits.shape[2])
        for step in 0..<t { for j in 0..<c { #expect(gz[(step * n + 1) * c + j] == 0) } }
    }

    /// Long rows run the eight-lane float32 recursion: it agrees with float64 (losses of
    /// about 100-300 nats, so the gradient's relative accuracy is about nll·1e-7).
    @Test func float32LongSequencesAgreeWithFloat64() throws {
        let (t, n, c, s) = (120, 3, 20, 37)
        let logits = Tensor.randn([t, n, c], dtype: .float64, generator: Generator(seed: 21))
        let labels = (0..<(n * s)).map { 1 + ($0 * 7 + $0 / 3) % (c - 1) }
        let targets = Tensor(int64: labels, shape: [n, s])
        let inputLengths = [120, 101, 80], targetLengths = [37, 30, 12]
        func run(_ dtype: DType) throws -> (Tensor, Tensor?) {
            let x = logits.to(dtype).requiringGrad()
            let loss = try Tensor.ctcLoss(logProbs: x.logSoftmax(axis: 2), targets: targets, inputLengths: inputLengths,
                                          targetLengths: targetLengths, reduction: .none)
            try loss.sum().backward()
            return (loss, x.grad)
        }
        let (loss64, grad64) = try run(.float64), (loss32, grad32) = try run(.float32)
        #expect(loss64.toDoubleArray().allSatisfy { $0.isFinite && $0 > 50 })
        #expect(Closeness.mismatch(loss32, loss64, rtol: 1e-5, atol: 1e-5, "loss") == nil)
        #expect(Closeness.mismatch(try #require(grad32), try #require(grad64), rtol: 1e-3, atol: 1e-4, "grad") == nil,
                "\(Closeness.mismatch(grad32!, grad64!, rtol: 1e-3, atol: 1e-4, "grad") ?? "")")
    }

    // MARK: - Gradient check

    /// Finite differences in float64 through `logSoftmax` (PyTorch's analytic gradient assumes
    /// normalised log-probabilities), for every reduction, with an input shorter than T, an
    /// empty target, a repeated label and (with zeroInfinity) an impossible sample.
    @Test(arguments: [Reduction.mean, .sum, .none])
    func gradcheck(_ reduction: Reduction) throws {
        let logits = Tensor.randn([7, 4, 5], dtype: .float64, generator: Generator(seed: 11))
        let targets = Tensor(int64: [1, 2, 2, 3, 4, 0, 0, 0, 2, 0, 0, 0, 1, 2, 3, 4], shape: [4, 4])
        let inputLengths = [7, 5, 3, 6], targetLengths = [3, 1, 0, 4]
        for zeroInfinity in [false, true] {
            // Sample 3 (4 labels in 6 frames) is feasible; shorten it to 3 frames when zeroInfinity.
            let lengths = zeroInfinity ? [7, 5, 3, 3] : inputLengths
            let result = try GradCheck.check([logits]) { xs in
                try Tensor.ctcLoss(logProbs: xs[0].logSoftmax(axis: 2), targets: targets, inputLengths: lengths,
                                   targetLengths: targetLengths, reduction: reduction, zeroInfinity: zeroInfinity)
            }
            #expect(result.passed, "zeroInfinity \(zeroInfinity): \(result.report)")
        }
    }

    /// The gradient with respect to the log-probabilities is PyTorch's `exp(lp) - γ`: the
    /// state occupancies γ of each frame sum to 1, so with normalised log-probabilities each
    /// frame's gradient sums to 0 (and the frames past the input length are 0).
    @Test func logProbsGradientIsSoftmaxMinusOccupancy() throws {
        let b = try batch("")
        let lp = try b.logits.logSoftmax(axis: 2).requiringGrad()
        try Tensor.ctcLoss(logProbs: lp, targets: b.targets, inputLengths: b.inputLengths, targetLengths: b.targetLengths,
                           reduction: .sum).backward()
        let grad = try #require(lp.grad).toDoubleArray()
        let (t, n, c) = (lp.shape[0], lp.shape[1], lp.shape[2])
        for step in 0..<t {
            for sample in 0..<n {
                let row = grad[((step * n + sample) * c)..<((step * n + sample + 1) * c)]
                if step < b.inputLengths[sample] {
                    #expect(Swift.abs(row.reduce(0, +)) < 1e-12)
                    #expect(row.contains { $0 != 0 })
                } else {
                    #expect(row.allSatisfy { $0 == 0 })
                }
            }
        }
    }

    /// The loss equals -log of the brute-force sum over all alignments.
    @Test func lossMatchesBruteForce() throws {
        let (t, c) = (5, 3)
        let lp = try Tensor.randn([t, 1, c], dtype: .float64, generator: Generator(seed: 5)).logSoftmax(axis: 2)
        let probs = try lp.exp().toDoubleArray()
        for target in [[1], [1, 1], [1, 2], [2, 1, 2], [] as [Int]] {
            var total = 0.0
            for path in Self.allPaths(t, c) where Self.collapse(path) == target {
                total += path.enumerated().reduce(1.0) { $0 * probs[$1.offset * c + $1.element] }
            }
            let padded = target.isEmpty ? [0] : target
            let loss = try Tensor.ctcLoss(logProbs: lp, targets: Tensor(int64: padded, shape: [1, padded.count]),
                                          inputLengths: [t], targetLengths: [target.count], reduction: .none)
            #expect(Swift.abs(try loss.item() + Foundation.log(total)) < 1e-12, "target \(target)")
        }
    }

    static func allPaths(_ t: Int, _ c: Int) -> [[Int]] {
        (0..<Int(pow(Double(c), Double(t)))).map { code in
            var k = code
            return (0..<t).map { _ in defer { k /= c }; return k % c }
        }
    }

    static func collapse(_ path: [Int], blank: Int = 0) -> [Int] {
        var out: [Int] = [], previous = -1
        for p in path {
            if p != blank && p != previous { out.append(p) }
            previous = p
        }
        return out
    }

    // MARK: - Decoding

    @Test(arguments: ["", "inf."])
    func goldenGreedy(_ prefix: String) throws {
        let b = try batch(prefix)
        let lp = try b.logits.logSoftmax(axis: 2)
        let decoded = try Tensor.ctcGreedyDecode(logProbs: lp, inputLengths: b.inputLengths)
        let greedy = try g(prefix + "greedy"), width = greedy.shape[1]
        let padded = decoded.flatMap { $0.labels + [Int](repeating: -1, count: width - $0.labels.count) }
        #expect(padded == greedy.toIntArray())
        #expect(decoded.map(\.labels.count) == (try g(prefix + "greedy_lengths")).toIntArray())
        let scores = Tensor(decoded.map(\.logProbability), shape: [decoded.count], dtype: .float64)
        try expectClose(scores, prefix + "best_path_logprob", rtol: Self.f64.rtol, atol: Self.f64.atol)
        // Float32 input decodes the same labels.
        let decoded32 = try Tensor.ctcGreedyDecode(logProbs: lp.to(.float32), inputLengths: b.inputLengths)
        #expect(decoded32.map(\.labels) == decoded.map(\.labels))
    }

    /// Width 1 follows the best path on confident frames: the golden batches, and random
    /// frames whose best class has most of the mass. It follows the most probable prefix, not
    /// the best single path: where they part (main-batch sample 3, whose last frame is 0.384
    /// label 5 against 0.349 blank), its labelling is the more probable one.
    @Test func beamWidthOneEqualsGreedy() throws {
        for prefix in ["", "inf."] {
            let b = try batch(prefix)
            let lp = try b.logits.logSoftmax(axis: 2)
            let greedy = try Tensor.ctcGreedyDecode(logProbs: lp, inputLengths: b.inputLengths)
            let beam = try Tensor.ctcBeamSearchDecode(logProbs: lp, inputLengths: b.inputLengths, beamWidth: 1)
            for n in 0..<greedy.count {
                if prefix == "" && n == 3 {
                    #expect(greedy[n].labels == [1, 2, 5] && beam[n][0].labels == [1, 2])
                    let sample = try lp.narrow(axis: 1, start: n, length: 1)
                    func nll(_ labels: [Int]) throws -> Double {
                        try Tensor.ctcLoss(logProbs: sample, targets: Tensor(int64: labels, shape: [1, labels.count]),
                                           inputLengths: [b.inputLengths[n]], targetLengths: [labels.count]).item() * Double(labels.count)
                    }
                    #expect(try nll(beam[n][0].labels) < nll(greedy[n].labels))
                } else {
                    #expect(beam[n][0].labels == greedy[n].labels, "batch '\(prefix)' sample \(n)")
                }
            }
        }
        let gen = Generator(seed: 3)
        let noise = Tensor.randn([30, 8, 6], dtype: .float64, generator: gen)
        let labels = Tensor(int64: (0..<240).map { ($0 * 7 + $0 / 5) % 6 }, shape: [30, 8])
        let peaks = try Tensor.oneHot(labels, numClasses: 6, dtype: .float64) * 6.0
        let lp = try (noise + peaks).logSoftmax(axis: 2)
        let greedy = try Tensor.ctcGreedyDecode(logProbs: lp)
        let beam = try Tensor.ctcBeamSearchDecode(logProbs: lp, beamWidth: 1)
        #expect(beam.map { $0[0].labels } == greedy.map(\.labels))
    }

    /// A beam wide enough to keep every prefix finds the most probable labelling, and its
    /// score is exactly -ctcLoss of that labelling.
    @Test func wideBeamFindsMostProbableLabelling() throws {
        let (t, c) = (5, 3)
        let lp = try Tensor.randn([t, 2, c], dtype: .float64, generator: Generator(seed: 9)).logSoftmax(axis: 2)
        let hypotheses = try Tensor.ctcBeamSearchDecode(logProbs: lp, beamWidth: 1000)
        let values = lp.toDoubleArray()
        for n in 0..<2 {
            var best: [Int: (labels: [Int], p: Double)] = [:]
            var byLabels: [[Int]: Double] = [:]
            for path in Self.allPaths(t, c) {
                let p = path.enumerated().reduce(1.0) { $0 * Foundation.exp(values[($1.offset * 2 + n) * c + $1.element]) }
                byLabels[Self.collapse(path), default: 0] += p
            }
            best[0] = byLabels.max { $0.value < $1.value }.map { ($0.key, $0.value) }
            let top = hypotheses[n][0]
            #expect(top.labels == best[0]!.labels)
            #expect(Swift.abs(top.logProbability - Foundation.log(best[0]!.p)) < 1e-12)
            for h in hypotheses[n].prefix(5) where !h.labels.isEmpty {
                let loss = try Tensor.ctcLoss(logProbs: lp.narrow(axis: 1, start: n, length: 1), targets: Tensor(int64: h.labels, shape: [1, h.labels.count]),
                                              inputLengths: [t], targetLengths: [h.labels.count], reduction: .none)
                #expect(Swift.abs(try loss.item() + h.logProbability) < 1e-12)
            }
            // Best first.
            let scores = hypotheses[n].map(\.logProbability)
            #expect(scores == scores.sorted(by: >))
        }
    }

    @Test func lengthNormalizationRanksByScorePerLabel() throws {
        let lp = try Tensor.randn([12, 3, 5], dtype: .float64, generator: Generator(seed: 4)).logSoftmax(axis: 2)
        let beams = try Tensor.ctcBeamSearchDecode(logProbs: lp, inputLengths: [12, 8, 0], beamWidth: 6, lengthNormalization: true)
        for hypotheses in beams {
            let ranks = hypotheses.map { $0.logProbability / Double(Swift.max($0.labels.count, 1)) }
            #expect(ranks == ranks.sorted(by: >))
        }
        #expect(beams[2] == [CTCHypothesis(labels: [], logProbability: 0)])
    }

    // MARK: - Bad input

    @Test func badInputThrowsTypedErrors() throws {
        let lp = try Tensor.randn([6, 2, 4], dtype: .float32).logSoftmax(axis: 2)
        let targets = Tensor(int64: [1, 2, 3, 1, 0, 0], shape: [2, 3])
        func ctc(_ lp: Tensor = lp, targets: Tensor = targets, il: [Int] = [6, 6], tl: [Int] = [3, 1],
                 blank: Int = 0) throws -> Tensor {
            try Tensor.ctcLoss(logProbs: lp, targets: targets, inputLengths: il, targetLengths: tl, blank: blank)
        }
        _ = try ctc()
        // A target length beyond the padded width.
        #expect(throws: TensorError.self) { try ctc(tl: [4, 1]) }
        // Lengths that do not match the batch.
        #expect(throws: TensorError.self) { try ctc(il: [6]) }
        #expect(throws: TensorError.self) { try ctc(tl: [3, 1, 1]) }
        // An input length longer than T, or negative lengths.
        #expect(throws: TensorError.self) { try ctc(il: [7, 6]) }
        #expect(throws: TensorError.self) { try ctc(il: [-1, 6]) }
        #expect(throws: TensorError.self) { try ctc(tl: [3, -1]) }
        // Labels out of range or equal to the blank.
        #expect(throws: TensorError.self) { try ctc(targets: Tensor(int64: [1, 4, 3, 1, 0, 0], shape: [2, 3])) }
        #expect(throws: TensorError.self) { try ctc(targets: Tensor(int64: [1, 0, 3, 1, 0, 0], shape: [2, 3])) }
        #expect(throws: TensorError.self) { try ctc(blank: 4) }
        // Concatenated targets whose count differs from the sum of the lengths.
        #expect(throws: TensorError.self) { try ctc(targets: Tensor(int64: [1, 2, 3])) }
        // Wrong rank or dtype.
        #expect(throws: TensorError.self) { try ctc(lp.reshape([6, 2, 2, 2])) }
        #expect(throws: TensorError.self) { try ctc(lp.reshape([12, 4])) }
        #expect(throws: TensorError.self) { try ctc(targets: targets.to(.float32)) }
        // Targets too long for the input are not an error but an infinite loss.
        let inf = try Tensor.ctcLoss(logProbs: lp, targets: targets, inputLengths: [2, 6], targetLengths: [3, 1], reduction: .none)
        #expect(inf.toDoubleArray()[0] == .infinity)
        #expect(throws: TensorError.self) { try Tensor.ctcGreedyDecode(logProbs: lp, inputLengths: [7, 1]) }
        #expect(throws: TensorError.self) { try Tensor.ctcBeamSearchDecode(logProbs: lp, beamWidth: 0) }
        #expect(throws: TensorError.self) { try Tensor.ctcBeamSearchDecode(logProbs: lp, inputLengths: [1], beamWidth: 2) }
    }
}
