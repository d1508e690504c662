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
        let expected = shape.reduce(1, *)
        guard data.count - headerSize == expected else {
            throw DatasetError.corrupt(path: path, reason: "shape \(shape) needs \(expected) bytes of data, file has \(data.count - headerSize)")
        }
        return try data[(data.startIndex + headerSize)...].withUnsafeBytes {
            try Tensor(bytes: $0, shape: shape, dtype: .uint8)
        }
    }
}

/// MNIST from the four IDX files in a folder (gzip or raw names both work).
public struct MNIST {
    /// Images [N, 28, 28] uint8.
    public let images: Tensor
    /// Labels [N] int64.
    public let labels: Tensor

    /// Loads the training (60,000) or test (10,000) split from `folder`.
    public init(folder: String, train: Bool) throws {
        let prefix = train ? "train" : "t10k"
        func find(_ stem: String) throws -> String {
            for name in [stem + ".gz", stem] {
                let path = folder + "/" + name
                if FileManager.default.fileExists(atPath: path) { return path }
            }
            throw DatasetError.unreadable(path: folder + "/" + stem + "[.gz]", reason: "file not found; pass the folder that holds the MNIST IDX files")
        }
        let imagePath = try find("\(prefix)-images-idx3-ubyte")
        let labelPath = try find("\(prefix)-labels-idx1-ubyte")
        images = try IDX.load(path: imagePath)
        labels = try IDX.load(path: labelPath).to(.int64)
        guard images.rank == 3, labels.rank == 1, images.shape[0] == labels.shape[0] else {
            throw DatasetError.corrupt(path: imagePath, reason: "images \(images.shape) do not match labels \(labels.shape)")
        }
    }

    /// Number of examples.
    public var count: Int { labels.shape[0] }

    /// Images `start..<end` as float32 [n, 1, 28, 28], scaled to [0, 1] and normalised with
    /// MNIST's mean 0.1307 and std 0.3081 (ToTensor + Normalize).
    public func normalizedImages(_ range: Range<Int>) throws -> Tensor {
        let raw = try images.narrow(axis: 0, start: range.lowerBound, length: range.count).to(.float32)
        return try ((raw / 255 - 0.1307) / 0.3081).reshape([range.count, 1, 28, 28])
    }
}
