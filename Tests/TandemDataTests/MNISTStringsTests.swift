import Foundation
import Testing
import TandemData
import TandemTestSupport

/// `MNISTStrings`: strings of 3–6 MNIST digits built from the vendored test split.
@Suite struct MNISTStringsTests {
    static var repoRoot: String { Golden.folder.replacingOccurrences(of: "/Tests/Fixtures/golden", with: "") }
    static let mnist = try! MNIST(folder: repoRoot + "/Data/mnist", train: false)

    static func strings(count: Int = 300, seed: UInt64 = 7, gap: ClosedRange<Int> = -4...4) throws -> MNISTStrings {
        try MNISTStrings(images: mnist.images, labels: mnist.labels.toIntArray(), count: count, seed: seed, gap: gap)
    }

    @Test func lengthsWidthsAndLabels() throws {
        let data = try Self.strings()
        #expect(data.count == 300)
        let mnistLabels = Self.mnist.labels.toIntArray()
        var seenCounts = Set<Int>()
        for i in 0..<data.count {
            let k = data.digitIndices[i].count
            seenCounts.insert(k)
            #expect((3...6).contains(k))
            // Width 28·k plus the gaps, each in -4...4.
            #expect(data.widths[i] >= 28 * k - 4 * (k - 1) && data.widths[i] <= 28 * k + 4 * (k - 1))
            #expect(data.offsets[i].first == 0 && data.offsets[i].last! + 28 == data.widths[i])
            #expect(data.labels(at: i) == data.digitIndices[i].map { mnistLabels[$0] + 1 })
        }
        #expect(seenCounts == [3, 4, 5, 6])
    }

    @Test func batchIsPaddedWithBackgroundAndLabelsWithZero() throws {
        let data = try Self.strings()
        let indices = [0, 5, 17, 42]
        let b = try data.collate(indices)
        let w = indices.map { data.widths[$0] }.max()!
        let s = indices.map { data.digitIndices[$0].count }.max()!
        #expect(b.images.shape == [4, 1, 28, w] && b.images.dtype == .float32)
        #expect(b.targets.shape == [4, s] && b.targets.dtype == .int64)
        #expect(b.widths == indices.map { data.widths[$0] })
        #expect(b.targetLengths == indices.map { data.digitIndices[$0].count })
        let pixels = b.images.toFloatArray(), targets = b.targets.toIntArray()
        for (r, i) in indices.enumerated() {
            #expect(Array(targets[(r * s)..<(r * s + b.targetLengths[r])]) == data.labels(at: i))
            #expect(targets[(r * s + b.targetLengths[r])..<((r + 1) * s)].allSatisfy { $0 == 0 })
            for row in 0..<28 {
                for col in b.widths[r]..<w { #expect(pixels[(r * 28 + row) * w + col] == MNISTStrings.background) }
            }
        }
        // The Dataset view gives the same tensors.
        let (x, y) = try data.batch(indices, epoch: 3)
        #expect(x.toFloatArray() == pixels && y.toIntArray() == targets)
        let (one, label) = try data.example(at: 5, epoch: 0)
        #expect(one.shape == [1, 28, data.widths[5]] && label.toIntArray() == data.labels(at: 5))
    }

    @Test func withoutGapsTheImageIsTheDigitsSideBySide() throws {
        let data = try Self.strings(count: 20, gap: 0...0)
        let b = try data.collate([3])
        let k = data.digitIndices[3].count
        #expect(b.widths == [28 * k])
        let pixels = b.images.toFloatArray()
        let raw = Self.mnist.images.toIntArray()
        for (j, m) in data.digitIndices[3].enumerated() {
            for row in [5, 14, 20] {
                for col in 0..<28 {
                    let expected = Float(Double(raw[(m * 28 + row) * 28 + col]) / 255 - MNIST.mean) / Float(MNIST.std)
                    #expect(Swift.abs(pixels[row * 28 * k + 28 * j + col] - expected) < 1e-5)
                }
            }
        }
    }

    @Test func deterministicFromTheSeed() throws {
        let a = try Self.strings(seed: 11), b = try Self.strings(seed: 11), c = try Self.strings(seed: 12)
        #expect(a.digitIndices == b.digitIndices && a.offsets == b.offsets && a.widths == b.widths)
        #expect(a.digitIndices != c.digitIndices)
        #expect(try a.collate([1, 2]).images.toFloatArray() == b.collate([1, 2]).images.toFloatArray())
    }
}
