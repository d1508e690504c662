import Foundation
import TandemNN

/// MambaOut's Gated CNN block (yuweihao/MambaOut `GatedCNNBlock`), channels-last:
/// `x [B, H, W, dim]` → `[B, H, W, dim]`,
/// `fc2(gelu(g) · cat(i, dwconv(c))) + x` where `g, i, c = split(fc1(norm(x)), (hidden, hidden − convChannels, convChannels))`,
/// `hidden = Int(expansionRatio · dim)`, `convChannels = Int(convRatio · dim)`, and `dwconv` is a
/// depthwise `kernelSize × kernelSize` convolution with "same" padding. Children (PyTorch names):
/// `norm` (LayerNorm, eps 1e-6), `fc1` (dim → 2·hidden), `conv`, `fc2` (hidden → dim).
public final class GatedCNNBlock: Module {
    /// LayerNorm over the channels, eps 1e-6.
    public let norm: LayerNorm
    /// `dim → 2·hidden`: gate, identity and conv channels.
    public let fc1: Linear
    /// The gate's activation (exact GELU).
    public let act: GELU
    /// Depthwise `kernelSize × kernelSize` convolution on the conv channels (its weights run on
    /// `Tensor.depthwiseConv2dChannelsLast`, so the block never leaves channels-last).
    public let conv: Conv2d
    /// `hidden → dim`.
    public let fc2: Linear
    /// Channels of the block's input and output.
    public let dim: Int
    /// Width of the gate (`Int(expansionRatio · dim)`).
    public let hidden: Int
    /// Channels that go through the depthwise convolution.
    public let convChannels: Int
    /// Training mode (the block behaves the same in both modes; drop path is not used).
    public var isTraining = true

    /// A block initialised like PyTorch's defaults (LayerNorm ones/zeros, Linear/Conv2d uniform).
    public init(_ dim: Int, expansionRatio: Double = 8.0 / 3.0, kernelSize: Int = 7, convRatio: Double = 1.0,
                generator: Generator = .default) {
        self.dim = dim
        hidden = Int(expansionRatio * Double(dim))
        convChannels = Swift.min(Int(convRatio * Double(dim)), hidden)
        norm = LayerNorm([dim], eps: 1e-6)
        fc1 = Linear(dim, 2 * hidden, generator: generator)
        act = GELU()
        conv = Conv2d(convChannels, convChannels, kernelSize: kernelSize, padding: kernelSize / 2,
                      groups: Swift.max(convChannels, 1), generator: generator)
        fc2 = Linear(hidden, dim, generator: generator)
    }

    /// `norm`, `fc1`, `act`, `conv`, `fc2`, as in the reference.
    public var children: [(String, any Module)] {
        [("norm", norm), ("fc1", fc1), ("act", act), ("conv", conv), ("fc2", fc2)]
    }

    /// `[B, H, W, dim]` → `[B, H, W, dim]`; any other shape is a `TensorError.shapeMismatch`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank == 4, input.shape[3] == dim else {
            throw TensorError.shapeMismatch(op: "GatedCNNBlock", message: "expects channels-last [B, H, W, \(dim)], got \(input.shape)")
        }
        let parts = try fc1(norm(input)).split(sizes: [hidden, hidden - convChannels, convChannels], axis: -1)
        // The conv channels stay channels-last: `conv`'s weights on a kernel that needs no NCHW copy.
        let c = try Tensor.depthwiseConv2dChannelsLast(parts[2], weight: conv.weight.value, bias: conv.bias?.value,
                                                       padding: conv.padding)
        let gated = try act(parts[0]) * Tensor.cat([parts[1], c], axis: -1)
        return try fc2(gated) + input
    }
}
