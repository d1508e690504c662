import Foundation
import Testing
import TandemModels
import TandemNN
import TandemOptim
import TandemTestSupport

/// The CTC digit recogniser: output shape and frame counts, names, per-sample lengths (padding
/// does not leak into a sample's frames), and a few steps of training lowering the CTC loss.
@Suite struct CTCDigitRecognizerTests {
    static func small(seed: UInt64 = 1) -> CTCDigitRecognizer {
        CTCDigitRecognizer(channels: (4, 8), dModel: 16, dState: 8, headdim: 8, chunkSize: 8, generator: Generator(seed: seed))
    }

    @Test func outputShapeAndFrames() throws {
        let model = Self.small()
        for w in [84, 87, 168] {
            let x = Tensor.randn([3, 1, 28, w], generator: Generator(seed: 2))
            let y = try model(x)
            #expect(y.shape == [CTCDigitRecognizer.frames(forWidth: w), 3, 11])
            #expect(y.shape[0] == w / 4)
            // Log-probabilities: each frame's probabilities sum to 1.
            let p = try y.exp().sum(axes: [2]).toDoubleArray()
            #expect(p.allSatisfy { Swift.abs($0 - 1) < 1e-4 })
        }
        #expect(CTCDigitRecognizer.frames(forWidth: 84) == 21 && CTCDigitRecognizer.frames(forWidth: 87) == 21)
        #expect(throws: TensorError.self) { try model(Tensor.zeros([2, 1, 28, 40]), widths: [40, 41]) }
        #expect(throws: TensorError.self) { try model(Tensor.zeros([2, 1, 27, 40])) }
    }

    @Test func stateDictNames() {
        let names = Self.small().stateDict().map(\.0)
        #expect(names.contains("features.0.weight") && names.contains("features.1.running_mean") && names.contains("features.4.weight"))
        #expect(names.contains("proj.weight") && names.contains("forward.0.in_proj.weight") && names.contains("backward.0.A_log"))
        #expect(names.contains("norms.0.weight") && names.contains("classifier.bias"))
    }

    /// With per-sample widths, a sample's real frames do not depend on how far the batch is
    /// padded (in evaluation mode, where BatchNorm uses running statistics).
    @Test func paddingDoesNotReachRealFrames() throws {
        let model = Self.small()
        model.eval()
        let g = Generator(seed: 4)
        let background = -0.1307 / 0.3081
        let short = try Tensor.randn([1, 1, 28, 60], generator: g).pad([0, 40], value: background)   // real width 60
        let long = Tensor.randn([1, 1, 28, 100], generator: g)
        // Two paddings of the same strings (the conv looks 3 px beyond a width, so pad both a little).
        let batch = try Tensor.cat([short, long], axis: 0).pad([0, 8], value: background)   // [2, 1, 28, 108]
        let wider = try batch.pad([0, 40], value: background)                               // [2, 1, 28, 148]
        let a = try model(batch, widths: [60, 100]), b = try model(wider, widths: [60, 100])
        #expect(a.shape == [27, 2, 11] && b.shape == [37, 2, 11])
        func frames(_ t: Tensor, sample: Int, count: Int) throws -> [Double] {
            try t.narrow(axis: 0, start: 0, length: count).narrow(axis: 1, start: sample, length: 1).toDoubleArray()
        }
        func maxDiff(_ x: [Double], _ y: [Double]) -> Double { zip(x, y).map { Swift.abs($0 - $1) }.max() ?? 0 }
        #expect(maxDiff(try frames(a, sample: 0, count: 15), try frames(b, sample: 0, count: 15)) < 1e-4)
        #expect(maxDiff(try frames(a, sample: 1, count: 25), try frames(b, sample: 1, count: 25)) < 1e-4)
        // Without the widths the reverse direction starts in the padding, and the frames differ.
        let unaware = try model(wider)
        #expect(maxDiff(try frames(b, sample: 1, count: 25), try frames(unaware, sample: 1, count: 25)) > 1e-3)
        // `widths` set on the module is used once by callAsFunction(_:), then cleared.
        model.widths = [60, 100]
        #expect(try model(batch).toDoubleArray() == a.toDoubleArray())
        #expect(model.widths == nil)
    }

    @Test func gradientsReachEveryParameter() throws {
        let model = Self.small()
        let x = Tensor.randn([2, 1, 28, 56], generator: Generator(seed: 5))
        let loss = try Tensor.ctcLoss(logProbs: model(x, widths: [56, 48]), targets: Tensor(int64: [1, 2, 3, 4, 0, 0], shape: [2, 3]),
                                      inputLengths: [14, 12], targetLengths: [3, 1])
        try loss.backward()
        for (name, p) in model.namedParameters() {
            let g = p.grad?.toDoubleArray() ?? []
            #expect(!g.isEmpty && g.allSatisfy { $0.isFinite } && g.contains { $0 != 0 }, "\(name)")
        }
    }

    /// A handful of Adam steps on a fixed batch of synthetic "digit strings" lowers the CTC loss.
    @Test func fewStepsReduceTheLoss() throws {
        let model = Self.small(seed: 3)
        let g = Generator(seed: 6)
        // Each class k in 1...10 is a fixed 28×28 pattern; a string of 3 patterns side by side.
        let patterns = (0..<10).map { _ in Tensor.randn([28, 28], generator: g).toFloatArray() }
        let n = 8, w = 84
        var pixels = [Float](repeating: 0, count: n * 28 * w), labels: [Int] = []
        for b in 0..<n {
            for j in 0..<3 {
                let k = Int(g.next() % 10)
                labels.append(k + 1)
                for r in 0..<28 { for c in 0..<28 { pixels[(b * 28 + r) * w + 28 * j + c] = patterns[k][r * 28 + c] } }
            }
        }
        let x = Tensor(pixels, shape: [n, 1, 28, w]), targets = Tensor(int64: labels, shape: [n, 3])
        let optimizer = try Adam(model.parameters(), lr: 3e-3)
        var losses: [Double] = []
        for _ in 0..<15 {
            optimizer.zeroGrad()
            let loss = try Tensor.ctcLoss(logProbs: model(x), targets: targets, inputLengths: [Int](repeating: 21, count: n),
                                          targetLengths: [Int](repeating: 3, count: n))
            try loss.backward()
            try optimizer.step()
            losses.append(try loss.item())
        }
        #expect(losses.allSatisfy { $0.isFinite })
        #expect(losses.last! < 0.7 * losses.first!, "\(losses)")
    }
}
