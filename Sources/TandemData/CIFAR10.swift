import Foundation
import TandemCore

/// CIFAR-10 from its binary batch files (`data_batch_1.bin` ... `data_batch_5.bin`,
/// `test_batch.bin`; each record is 1 label byte and 3×32×32 pixel bytes, channel-major).
/// Examples are `([3, 32, 32] float32, [] int64)` after the transform (default ToTensor +
/// Normalize with the seed's CIFAR statistics).
public struct CIFAR10: Dataset {
    /// Images [N, 3, 32, 32] uint8.
    public let images: Tensor
    /// Labels [N] int64.
    public let labels: Tensor
    public var transform: any Transform
    public var seed: UInt64 = 0

    public static let mean = [0.4914, 0.4822, 0.4465], std = [0.2023, 0.1994, 0.2010]
    static let recordSize = 1 + 3 * 32 * 32

    /// The seed's training transform: RandomCrop(32, padding 4), RandomHorizontalFlip, ToTensor, Normalize.
    public static var trainTransform: any Transform {
        Compose([RandomCrop(size: 32, padding: 4), RandomHorizontalFlip(), ToTensor(), Normalize(mean: mean, std: std)])
    }
    /// ToTensor and Normalize.
    public static var testTransform: any Transform { Compose([ToTensor(), Normalize(mean: mean, std: std)]) }

    /// Loads the training or test batches from `folder` (the `cifar-10-batches-bin` folder).
    public init(folder: String, train: Bool, transform: (any Transform)? = nil) throws {
        let names = train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"]
        var labelBytes: [Int] = []
        var pixels = Data()
        for name in names {
            let path = folder + "/" + name
            guard FileManager.default.fileExists(atPath: path) else {
                throw DatasetError.unreadable(path: path, reason: "file not found; pass the cifar-10-batches-bin folder")
            }
            let data = try CompressedFile.read(path: path)
            guard !data.isEmpty, data.count % Self.recordSize == 0 else {
                throw DatasetError.corrupt(path: path, reason: "\(data.count) bytes is not a whole number of \(Self.recordSize)-byte records")
            }
            var offset = data.startIndex
            while offset < data.endIndex {
                let label = Int(data[offset])
                guard label < 10 else { throw DatasetError.corrupt(path: path, reason: "label \(label) at byte \(offset - data.startIndex) is not in 0...9") }
                labelBytes.append(label)
                pixels.append(data[(offset + 1)..<(offset + Self.recordSize)])
                offset += Self.recordSize
            }
        }
        images = try pixels.withUnsafeBytes { try Tensor(bytes: $0, shape: [labelBytes.count, 3, 32, 32], dtype: .uint8) }
        labels = Tensor(int64: labelBytes)
        self.transform = transform ?? (train ? Self.trainTransform : Self.testTransform)
    }

    public var count: Int { labels.shape[0] }

    public func example(at index: Int, epoch: Int) throws -> (input: Tensor, target: Tensor) {
        let image = try transform.apply(images[index], generator: ExampleSeed.generator(seed: seed, epoch: epoch, index: index))
        return (image, try labels[index])
    }
}
