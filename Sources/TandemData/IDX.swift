import Foundation
import TandemCore

/// The IDX format of the MNIST files: a magic number (0, 0, type 0x08 = ubyte, rank),
/// big-endian 32-bit dimension sizes, then the bytes.
public enum IDX {
    /// Reads an IDX file of unsigned bytes (gzip or raw) into a uint8 tensor of its shape.
    public static func load(path: String) throws -> Tensor {
        let data = try CompressedFile.read(path: path)
        return try decode(data, path: path)
    }

    /// Decodes IDX bytes; `path` names the source in errors.
    public static func decode(_ data: Data, path: String) throws -> Tensor {
        let bytes = [UInt8](data.prefix(4))
        guard bytes.count == 4, bytes[0] == 0, bytes[1] == 0 else {
            throw DatasetError.corrupt(path: path, reason: "not an IDX file (bad magic number)")
        }
        guard bytes[2] == 0x08 else {
            throw DatasetError.corrupt(path: path, reason: "element type 0x\(String(bytes[2], radix: 16)) is not unsigned byte")
        }
        let rank = Int(bytes[3])
        let headerSize = 4 + 4 * rank
        guard rank >= 1, data.count >= headerSize else {
            throw DatasetError.corrupt(path: path, reason: "header is truncated")
        }
        var shape: [Int] = []
        for d in 0..<rank {
            let start = data.startIndex + 4 + 4 * d
            shape.append(data[start..<(start + 4)].reduce(0) { $0 << 8 | Int($1) })
        }
        guard let expected = Tensor.checkedElementCount(shape) else {
            throw DatasetError.corrupt(path: path, reason: "shape \(shape) in the header has more elements than memory can address")
        }
        guard data.count - headerSize == expected else {
            throw DatasetError.corrupt(path: path, reason: "shape \(shape) needs \(expected) bytes of data, file has \(data.count - headerSize)")
        }
        return try data[(data.startIndex + headerSize)...].withUnsafeBytes {
            try Tensor(bytes: $0, shape: shape, dtype: .uint8)
        }
    }
}

/// MNIST from the four IDX files in a folder (gzip or raw names both work).
/// Examples are `([1, 28, 28] float32, [] int64)`; with no transform the image is ToTensor +
/// Normalize(0.1307, 0.3081), computed for a whole batch at once.
public struct MNIST: Dataset {
    /// Images [N, 28, 28] uint8.
    public let images: Tensor
    /// Labels [N] int64.
    public let labels: Tensor
    /// A per-example transform of the uint8 image [1, 28, 28]; nil for the default normalisation.
    public var transform: (any Transform)?
    /// Seed of random transforms.
    public var seed: UInt64 = 0

    /// Mean and standard deviation of MNIST's training pixels (scaled to [0, 1]).
    public static let mean = 0.1307, std = 0.3081

    /// Loads the training (60,000) or test (10,000) split from `folder`.
    public init(folder: String, train: Bool, transform: (any Transform)? = nil) throws {
        let prefix = train ? "train" : "t10k"
        func find(_ stem: String) throws -> String {
            for name in [stem + ".gz", stem] {
                let path = folder + "/" + name
                if FileManager.default.fileExists(atPath: path) { return path }
            }
            throw DatasetError.unreadable(path: folder + "/" + stem + "[.gz]", reason: "file not found; pass the folder that holds the MNIST IDX files (or download them with MNIST.download(to:))")
        }
        let imagePath = try find("\(prefix)-images-idx3-ubyte")
        let labelPath = try find("\(prefix)-labels-idx1-ubyte")
        images = try IDX.load(path: imagePath)
        labels = try IDX.load(path: labelPath).to(.int64)
        self.transform = transform
        guard images.rank == 3, labels.rank == 1, images.shape[0] == labels.shape[0] else {
            throw DatasetError.corrupt(path: imagePath, reason: "images \(images.shape) do not match labels \(labels.shape)")
        }
        guard images.shape[1] == 28, images.shape[2] == 28 else {
            throw DatasetError.corrupt(path: imagePath, reason: "image size is \(images.shape[1])×\(images.shape[2]) in the header; "
                                       + "MNIST images are 28×28")
        }
        let values = labels.toIntArray()
        if let bad = values.firstIndex(where: { !(0...9).contains($0) }) {
            throw DatasetError.corrupt(path: labelPath, reason: "label \(bad) is \(values[bad]); MNIST labels are 0 to 9")
        }
    }

    /// Number of examples.
    public var count: Int { labels.shape[0] }

    public func example(at index: Int, epoch: Int) throws -> (input: Tensor, target: Tensor) {
        let raw = try images[index].unsqueeze(0)
        let input: Tensor
        if let transform {
            input = try transform.apply(raw, generator: ExampleSeed.generator(seed: seed, epoch: epoch, index: index))
        } else {
            input = try (raw.to(.float32) / 255 - Self.mean) / Self.std
        }
        return (input, try labels[index])
    }

    public func batch(_ indices: [Int], epoch: Int) throws -> (input: Tensor, target: Tensor) {
        if transform != nil { return try Collate.stack(indices.map { try example(at: $0, epoch: epoch) }) }
        let index = Tensor(int64: indices)
        return (try normalized(images.indexSelect(axis: 0, index: index)), try labels.indexSelect(axis: 0, index: index))
    }

    /// Images `range` as float32 [n, 1, 28, 28], ToTensor + Normalize.
    public func normalizedImages(_ range: Range<Int>) throws -> Tensor {
        try normalized(images.narrow(axis: 0, start: range.lowerBound, length: range.count))
    }

    private func normalized(_ raw: Tensor) throws -> Tensor {
        let n = raw.shape[0]
        var out = Tensor.zeros([n, 1, 28, 28])
        let scale = Float(1 / (255 * Self.std)), shift = Float(Self.mean / Self.std)
        try raw.withUnsafeBufferPointer(as: UInt8.self) { src in
            try out.withUnsafeMutableBufferPointer(as: Float.self) { dst in
                for i in 0..<dst.count { dst[i] = Float(src[i]) * scale - shift }
            }
        }
        return out
    }
}
