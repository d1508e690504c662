import Foundation
import TandemCore

/// Images of 3–6 MNIST digits side by side, built at load time from the real MNIST files, for
/// sequence recognition with CTC.
///
/// String `i` is fixed by `seed`: its digit count `k` (uniform in `digitCount`), the `k` MNIST
/// images it uses (drawn from the training images for `train: true`, from the test images
/// otherwise) and the horizontal offset between neighbours (`28 + g`, `g` uniform in `gap`,
/// negative `g` overlaps, pixels combined by maximum). The image is 28 px high and
/// `28·k + Σ g` wide; nothing is stored but these choices, so images are composed per batch.
///
/// Labels: digit `d` is class `d + 1` (1…10); class 0 is the CTC blank and the target padding.
/// Pixels are normalised like MNIST (`(p/255 − 0.1307)/0.3081`); batches are padded on the
/// right to their widest image with the background value (raw 0).
public struct MNISTStrings: Dataset {
    /// One composed batch.
    public struct Batch: Sendable {
        /// `[N, 1, 28, W]` float32, `W` the widest image of the batch; columns past a sample's
        /// width hold the background value.
        public var images: Tensor
        /// `[N, S]` int64 labels in 1…10, `S` the longest string, padded with 0.
        public var targets: Tensor
        /// `[N]` digits per string (the target lengths).
        public var targetLengths: [Int]
        /// `[N]` image widths in pixels before padding.
        public var widths: [Int]
    }

    /// MNIST images `[M, 28, 28]` uint8 that the strings are made of.
    public let digitImages: Tensor
    /// MNIST labels `[M]` of `digitImages`.
    public let digitLabels: [Int]
    /// The MNIST indices of each string's digits, left to right.
    public let digitIndices: [[Int]]
    /// Left edge of each digit in its string's image, in pixels (first 0).
    public let offsets: [[Int]]
    /// Image width of each string in pixels.
    public let widths: [Int]
    /// The seed the strings were drawn with.
    public let seed: UInt64

    /// Background pixel (raw 0) after normalisation.
    public static let background = Float(-MNIST.mean / MNIST.std)

    /// Draws `count` strings from the MNIST split in `folder` (see `MNIST(folder:train:)`).
    /// `digitCount`: digits per string; `gap`: extra pixels between neighbours (negative overlaps, ≥ −27).
    public init(folder: String, train: Bool, count: Int, seed: UInt64 = 0, digitCount: ClosedRange<Int> = 3...6,
                gap: ClosedRange<Int> = -4...4) throws {
        let mnist = try MNIST(folder: folder, train: train)
        try self.init(images: mnist.images, labels: mnist.labels.toIntArray(), count: count, seed: seed,
                      digitCount: digitCount, gap: gap)
    }

    /// Draws `count` strings from digit images `[M, 28, 28]` uint8 with labels `[M]` in 0…9.
    public init(images: Tensor, labels: [Int], count: Int, seed: UInt64 = 0, digitCount: ClosedRange<Int> = 3...6,
                gap: ClosedRange<Int> = -4...4) throws {
        guard images.rank == 3, images.shape[1] == 28, images.shape[2] == 28, images.dtype == .uint8,
              images.shape[0] == labels.count, !labels.isEmpty else {
            throw TensorError.shapeMismatch(op: "MNISTStrings", message: "needs uint8 images [M, 28, 28] and M > 0 labels, got \(images.shape) \(images.dtype) and \(labels.count) labels")
        }
        guard labels.allSatisfy({ (0...9).contains($0) }) else {
            throw TensorError.invalidArgument(op: "MNISTStrings", message: "digit labels must lie in 0...9")
        }
        guard count >= 0, digitCount.lowerBound >= 1, gap.lowerBound > -28 else {
            throw TensorError.invalidArgument(op: "MNISTStrings", message: "need count ≥ 0, at least 1 digit and gaps > −28; got \(count), \(digitCount), \(gap)")
        }
        digitImages = images
        digitLabels = labels
        self.seed = seed
        // A splitmix64 stream: the strings depend on the seed only.
        var state = seed &+ 0x5DEE_CE66_D1CE_4E5B
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        func uniform(_ range: ClosedRange<Int>) -> Int {
            range.lowerBound + Int(next() % UInt64(range.count))
        }
        var indices: [[Int]] = [], offsets: [[Int]] = [], widths: [Int] = []
        indices.reserveCapacity(count)
        for _ in 0..<count {
            let k = uniform(digitCount)
            var picked: [Int] = [], left: [Int] = []
            var x = 0
            for j in 0..<k {
                if j > 0 { x += 28 + uniform(gap) }
                picked.append(Int(next() % UInt64(labels.count)))
                left.append(x)
            }
            indices.append(picked)
            offsets.append(left)
            widths.append(x + 28)
        }
        digitIndices = indices
        self.offsets = offsets
        self.widths = widths
    }

    /// Number of strings.
    public var count: Int { widths.count }

    /// The labels of string `index` (classes 1…10, digit + 1).
    public func labels(at index: Int) -> [Int] { digitIndices[index].map { digitLabels[$0] + 1 } }

    /// String `index`: image `[1, 28, width]` float32 and labels `[k]` int64 (1…10).
    public func example(at index: Int, epoch: Int) throws -> (input: Tensor, target: Tensor) {
        let b = try collate([index])
        return (try b.images.squeeze(0), try b.targets.squeeze(0))
    }

    /// Images `[N, 1, 28, W]` and zero-padded labels `[N, S]` (see `collate` for the lengths).
    public func batch(_ indices: [Int], epoch: Int) throws -> (input: Tensor, target: Tensor) {
        let b = try collate(indices)
        return (b.images, b.targets)
    }

    /// Composes the strings at `indices` into one padded batch with their lengths.
    public func collate(_ indices: [Int]) throws -> Batch {
        guard !indices.isEmpty else {
            throw TensorError.invalidArgument(op: "MNISTStrings", message: "cannot collate an empty batch")
        }
        let n = indices.count
        let w = indices.map { widths[$0] }.max()!
        let s = indices.map { digitIndices[$0].count }.max()!
        var raw = [UInt8](repeating: 0, count: n * 28 * w)
        var targets = [Int](repeating: 0, count: n * s)
        try digitImages.withUnsafeBufferPointer(as: UInt8.self) { src in
            for (b, i) in indices.enumerated() {
                for (j, m) in digitIndices[i].enumerated() {
                    targets[b * s + j] = digitLabels[m] + 1
                    let x0 = offsets[i][j]
                    for r in 0..<28 {
                        let row = (b * 28 + r) * w + x0
                        let from = (m * 28 + r) * 28
                        for c in 0..<28 where src[from + c] > raw[row + c] { raw[row + c] = src[from + c] }
                    }
                }
            }
        }
        let scale = Float(1 / (255 * MNIST.std)), shift = Float(MNIST.mean / MNIST.std)
        let pixels = raw.map { Float($0) * scale - shift }
        return Batch(images: Tensor(pixels, shape: [n, 1, 28, w]),
                     targets: Tensor(int64: targets, shape: [n, s]),
                     targetLengths: indices.map { digitIndices[$0].count }, widths: indices.map { widths[$0] })
    }
}
