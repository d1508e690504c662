import TandemCore

/// A per-example transform of an image tensor `[C, H, W]`. Random transforms draw from the
/// given generator, which the dataset seeds from (seed, epoch, index): results do not depend
/// on the number of workers.
public protocol Transform: Sendable {
    func apply(_ image: Tensor, generator: Generator) throws -> Tensor
}

/// uint8 pixels → float32 in [0, 1] (`transforms.ToTensor` on CHW data).
public struct ToTensor: Transform {
    public init() {}
    public func apply(_ image: Tensor, generator: Generator) throws -> Tensor {
        image.dtype == .uint8 ? try image.to(.float32) / 255 : image.to(.float32)
    }
}

/// `(x - mean[c]) / std[c]` per channel of `[C, H, W]`.
public struct Normalize: Transform {
    public let mean: [Double], std: [Double]
    public init(mean: [Double], std: [Double]) { self.mean = mean; self.std = std }
    public func apply(_ image: Tensor, generator: Generator) throws -> Tensor {
        guard image.rank == 3, image.shape[0] == mean.count, mean.count == std.count else {
            throw TensorError.shapeMismatch(op: "Normalize", message: "image \(image.shape) for \(mean.count) channel means")
        }
        let m = Tensor(mean, shape: [mean.count, 1, 1], dtype: image.dtype)
        let s = Tensor(std, shape: [std.count, 1, 1], dtype: image.dtype)
        return try (image - m) / s
    }
}

/// Pads by `padding` zeros on each side, then crops a random `size × size` window.
public struct RandomCrop: Transform {
    public let size: Int, padding: Int
    public init(size: Int, padding: Int = 0) { self.size = size; self.padding = padding }
    public func apply(_ image: Tensor, generator: Generator) throws -> Tensor {
        let padded = padding > 0 ? try image.pad([padding, padding, padding, padding]) : image
        let h = padded.shape[1], w = padded.shape[2]
        guard h >= size, w >= size else {
            throw TensorError.shapeMismatch(op: "RandomCrop", message: "image \(image.shape) with padding \(padding) is smaller than \(size)")
        }
        let top = Int(generator.next() % UInt64(h - size + 1)), left = Int(generator.next() % UInt64(w - size + 1))
        return try padded.narrow(axis: 1, start: top, length: size).narrow(axis: 2, start: left, length: size).contiguous()
    }
}

/// Mirrors the image left-right with probability `p`.
public struct RandomHorizontalFlip: Transform {
    public let p: Double
    public init(p: Double = 0.5) { self.p = p }
    public func apply(_ image: Tensor, generator: Generator) throws -> Tensor {
        guard Double(generator.next() >> 11) * 0x1.0p-53 < p else { return image }
        let w = image.shape[image.rank - 1]
        return try image.indexSelect(axis: image.rank - 1, index: Tensor(int64: Array((0..<w).reversed())))
    }
}

/// Applies transforms in order.
public struct Compose: Transform {
    public let transforms: [any Transform]
    public init(_ transforms: [any Transform]) { self.transforms = transforms }
    public func apply(_ image: Tensor, generator: Generator) throws -> Tensor {
        try transforms.reduce(image) { try $1.apply($0, generator: generator) }
    }
}

enum ExampleSeed {
    /// A generator for one example in one epoch, independent of which worker makes it.
    static func generator(seed: UInt64, epoch: Int, index: Int) -> Generator {
        Generator(seed: seed ^ (UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(truncatingIfNeeded: index) &* 0xBF58_476D_1CE4_E5B9))
    }
}
