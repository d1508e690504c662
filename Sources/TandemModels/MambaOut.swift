import Foundation
import TandemNN

/// MambaOut's stem: `conv1` (3×3, stride 2, outChannels/2) → `norm1` → GELU → `conv2` (3×3,
/// stride 2) → `norm2`, LayerNorms (eps 1e-6) in channels-last. `[B, C, H, W]` → `[B, H/4, W/4, out]`.
public final class MambaOutStem: Module {
    /// Layers of the stem: `conv1`, `norm1`, `act`, `conv2`, `norm2`.
    public let conv1: Conv2d, norm1: LayerNorm, act = GELU(), conv2: Conv2d, norm2: LayerNorm
    /// Training mode (no layer here behaves differently).
    public var isTraining = true

    /// A stem from `inChannels` to `outChannels`.
    public init(_ inChannels: Int, _ outChannels: Int, generator: Generator = .default) {
        conv1 = Conv2d(inChannels, outChannels / 2, kernelSize: 3, stride: 2, padding: 1, generator: generator)
        norm1 = LayerNorm([outChannels / 2], eps: 1e-6)
        conv2 = Conv2d(outChannels / 2, outChannels, kernelSize: 3, stride: 2, padding: 1, generator: generator)
        norm2 = LayerNorm([outChannels], eps: 1e-6)
    }

    /// Sub-modules with their PyTorch names.
    public var children: [(String, any Module)] {
        [("conv1", conv1), ("norm1", norm1), ("act", act), ("conv2", conv2), ("norm2", norm2)]
    }

    /// `[B, C, H, W]` (channels first) → `[B, H', W', out]` (channels last).
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        var x = try norm1(conv1(input).permute([0, 2, 3, 1])).permute([0, 3, 1, 2]).contiguous()
        x = try conv2(act(x))
        return try norm2(x.permute([0, 2, 3, 1]))
    }
}

/// MambaOut's downsampling between stages: `conv` (3×3, stride 2, padding 1) then `norm`
/// (LayerNorm eps 1e-6), channels-last in and out: `[B, H, W, in]` → `[B, ⌈H/2⌉, ⌈W/2⌉, out]`.
public final class MambaOutDownsample: Module {
    /// The strided convolution and the LayerNorm after it.
    public let conv: Conv2d, norm: LayerNorm
    /// Training mode (no layer here behaves differently).
    public var isTraining = true

    /// Downsampling from `inChannels` to `outChannels`.
    public init(_ inChannels: Int, _ outChannels: Int, generator: Generator = .default) {
        conv = Conv2d(inChannels, outChannels, kernelSize: 3, stride: 2, padding: 1, generator: generator)
        norm = LayerNorm([outChannels], eps: 1e-6)
    }

    /// Sub-modules with their PyTorch names.
    public var children: [(String, any Module)] { [("conv", conv), ("norm", norm)] }

    /// `[B, H, W, in]` → `[B, H', W', out]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try norm(conv(input.permute([0, 3, 1, 2]).contiguous()).permute([0, 2, 3, 1]))
    }
}

/// MambaOut's classifier head: `fc1` (dim → mlpRatio·dim) → GELU → `norm` → `fc2`.
/// `[B, dim]` → `[B, numClasses]`.
public final class MambaOutHead: Module {
    /// Layers of the head: `fc1`, `act`, `norm`, `fc2`.
    public let fc1: Linear, act = GELU(), norm: LayerNorm, fc2: Linear
    /// Training mode (no layer here behaves differently).
    public var isTraining = true

    /// A head with hidden width `Int(mlpRatio · dim)`.
    public init(_ dim: Int, numClasses: Int, mlpRatio: Double = 4, generator: Generator = .default) {
        let hidden = Int(mlpRatio * Double(dim))
        fc1 = Linear(dim, hidden, generator: generator)
        norm = LayerNorm([hidden], eps: 1e-6)
        fc2 = Linear(hidden, numClasses, generator: generator)
    }

    /// Sub-modules with their PyTorch names.
    public var children: [(String, any Module)] { [("fc1", fc1), ("act", act), ("norm", norm), ("fc2", fc2)] }

    /// `[B, dim]` → `[B, numClasses]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try fc2(norm(act(fc1(input)))) }
}

/// MambaOut (Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?"): four stages of
/// `GatedCNNBlock`s, a stem and three downsampling layers between them, a mean pool over
/// H and W, `norm` (LayerNorm eps 1e-6) and an MLP head. Input images `[B, inChannels, H, W]`
/// (channels first, like Conv2d) → logits `[B, numClasses]`. State-dict names match the
/// reference: `downsample_layers.<i>.*`, `stages.<i>.<j>.*`, `norm.*`, `head.*`.
public final class MambaOut: Module {
    /// Depths and widths of the four stages.
    public struct Config: Sendable, Equatable {
        public var depths: [Int]
        public var dims: [Int]
        /// Creates a configuration; `depths` and `dims` have one entry per stage.
        public init(depths: [Int], dims: [Int]) { self.depths = depths; self.dims = dims }

        /// MambaOut-Femto: depths [3, 3, 9, 3], dims [48, 96, 192, 288].
        public static let femto = Config(depths: [3, 3, 9, 3], dims: [48, 96, 192, 288])
        /// MambaOut-Tiny: depths [3, 3, 9, 3], dims [96, 192, 384, 576].
        public static let tiny = Config(depths: [3, 3, 9, 3], dims: [96, 192, 384, 576])
        /// MambaOut-Small: depths [3, 4, 27, 3], dims [96, 192, 384, 576].
        public static let small = Config(depths: [3, 4, 27, 3], dims: [96, 192, 384, 576])
        /// MambaOut-Base: depths [3, 4, 27, 3], dims [128, 256, 512, 768].
        public static let base = Config(depths: [3, 4, 27, 3], dims: [128, 256, 512, 768])
        /// A scaled-down preset that trains on 28×28 MNIST or 32×32 CIFAR-10 on a CPU:
        /// depths [1, 1, 2, 1], dims [16, 32, 64, 96].
        public static let mini = Config(depths: [1, 1, 2, 1], dims: [16, 32, 64, 96])
    }

    /// The stage depths and widths.
    public let config: Config
    /// Channels of the input images.
    public let inChannels: Int
    /// Stem then three downsampling layers.
    public let downsampleLayers: Sequential
    /// The four stages, each a `Sequential` of `GatedCNNBlock`s.
    public let stages: Sequential
    /// LayerNorm (eps 1e-6) after the mean pool.
    public let norm: LayerNorm
    /// The MLP classifier head.
    public let head: MambaOutHead
    /// Training mode (no layer here behaves differently).
    public var isTraining = true

    /// A model for `inChannels`-channel images and `numClasses` classes. `kernelSize` and
    /// `convRatio` go to every `GatedCNNBlock`.
    public init(_ config: Config = .femto, inChannels: Int = 3, numClasses: Int = 1000, kernelSize: Int = 7,
                convRatio: Double = 1.0, generator: Generator = .default) {
        self.config = config
        self.inChannels = inChannels
        let dims = config.dims
        var down: [any Module] = [MambaOutStem(inChannels, dims[0], generator: generator)]
        for i in 1..<dims.count { down.append(MambaOutDownsample(dims[i - 1], dims[i], generator: generator)) }
        downsampleLayers = Sequential(down)
        stages = Sequential(zip(config.depths, dims).map { depth, dim in
            Sequential((0..<depth).map { _ in
                GatedCNNBlock(dim, kernelSize: kernelSize, convRatio: convRatio, generator: generator) as any Module
            })
        })
        norm = LayerNorm([dims[dims.count - 1]], eps: 1e-6)
        head = MambaOutHead(dims[dims.count - 1], numClasses: numClasses, generator: generator)
    }

    /// Sub-modules with their PyTorch names.
    public var children: [(String, any Module)] {
        [("downsample_layers", downsampleLayers), ("stages", stages), ("norm", norm), ("head", head)]
    }

    /// `[B, inChannels, H, W]` → `[B, numClasses]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank == 4, input.shape[1] == inChannels, input.shape[2] > 0, input.shape[3] > 0 else {
            throw TensorError.shapeMismatch(op: "MambaOut", message: "expects images [B, \(inChannels), H, W], got \(input.shape)")
        }
        var x = input
        for (down, stage) in zip(downsampleLayers.layers, stages.layers) { x = try stage(down(x)) }
        return try head(norm(x.mean(axes: [1, 2])))
    }
}
