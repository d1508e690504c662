import TandemCore

/// Rows of `Conv2d → BatchNorm2d → ReLU → MaxPool2d` blocks that run as one fused operation
/// (`Tensor.fusedConvBlocks`: oneDNN's convolution, Tandem's batch norm and ReLU on oneDNN's
/// layout, pooling; the intermediate outputs stay in that layout). A model opts in by building
/// `ConvBlocks` where it would build a `Sequential` of such layers, or by running
/// `fuseConvBlocks(in:)` on a model it already has.
///
/// The children are the layers, named "0", "1", … as in `nn.Sequential`, so the state dict is
/// the one of the `Sequential` it replaces. Where the fused operation does not apply (a layer
/// replaced, e.g. by `convertSyncBatchNorm`; a grouped or dilated convolution; batch norms in
/// different modes; a shape oneDNN refuses), the layers run one by one, each `ReLU, MaxPool2d`
/// pair as pooling then ReLU (the same values and gradients; the ReLU touches a quarter of the
/// elements at 2×2). Input `[N, C, H, W]`.
public final class ConvBlocks: Module, ReplaceableChildren {
    /// The layers, in order.
    public private(set) var layers: [any Module]
    public var isTraining = true

    /// Any layers; the fused path applies to each run of four that forms a block.
    public init(_ layers: [any Module]) { self.layers = layers }

    /// `ConvBlocks(conv, norm, ReLU(), pool, …)`.
    public convenience init(_ layers: any Module...) { self.init(layers) }

    public var children: [(String, any Module)] { layers.enumerated().map { ("\($0.offset)", $0.element) } }

    public func replaceChild(named name: String, with module: any Module) {
        if let i = Int(name), layers.indices.contains(i) { layers[i] = module }
    }

    /// The blocks, or nil unless the layers are whole blocks only.
    var blocks: [ConvBlockLayers]? {
        guard !layers.isEmpty, layers.count % 4 == 0 else { return nil }
        let blocks = stride(from: 0, to: layers.count, by: 4).compactMap { ConvBlockLayers(layers, at: $0) }
        return blocks.count * 4 == layers.count ? blocks : nil
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor { try Self.chain([self], input) }

    /// `parts` applied to `x` in order. When every part is made of whole blocks, all their
    /// blocks run as one fused operation when it applies (as the seed ConvNet's `layer1` and
    /// `layer2`); otherwise each part runs on its own.
    public static func chain(_ parts: [ConvBlocks], _ x: Tensor) throws -> Tensor {
        let rows = parts.map(\.blocks)
        if rows.allSatisfy({ $0 != nil }), let output = try ConvBlockLayers.run(rows.flatMap { $0! }, x) {
            return output
        }
        return try parts.reduce(x) { try $1.runEach($0) }
    }

    /// Each block fused where it can, the remaining layers one by one.
    private func runEach(_ input: Tensor) throws -> Tensor {
        var x = input
        var i = 0
        while i < layers.count {
            if let block = ConvBlockLayers(layers, at: i), let output = try ConvBlockLayers.run([block], x) {
                x = output
                i += 4
            } else if i + 1 < layers.count, layers[i] is ReLU, let pool = layers[i + 1] as? MaxPool2d {
                x = try layers[i](pool(x))
                i += 2
            } else {
                x = try layers[i](x)
                i += 1
            }
        }
        return x
    }
}

/// The fusion pass: replaces, anywhere in `model`, each `Sequential` made only of
/// `Conv2d, BatchNorm2d, ReLU, MaxPool2d` blocks with a `ConvBlocks` of the same layers (the same
/// parameters and state-dict names). Only children of containers that can swap them
/// (`ReplaceableChildren`) are replaced. Returns how many were.
@discardableResult
public func fuseConvBlocks(in model: any Module) -> Int {
    var replaced = 0
    for (name, child) in model.children {
        if let sequential = child as? Sequential, let container = model as? any ReplaceableChildren,
           ConvBlocks(sequential.layers).blocks != nil {
            container.replaceChild(named: name, with: ConvBlocks(sequential.layers))
            replaced += 1
        } else {
            replaced += fuseConvBlocks(in: child)
        }
    }
    return replaced
}

/// `Conv2d, BatchNorm2d, ReLU, MaxPool2d` layers that can run as one fused block.
struct ConvBlockLayers {
    let conv: Conv2d, norm: BatchNorm2d, pool: MaxPool2d
    /// The batch norm's affine weight and bias.
    let normWeight: Parameter, normBias: Parameter

    /// The block starting at `layers[i]`, or nil when those four layers are not one (a
    /// grouped or dilated convolution, a batch norm without affine parameters).
    init?(_ layers: [any Module], at i: Int) {
        guard i >= 0, i + 3 < layers.count, let conv = layers[i] as? Conv2d, let norm = layers[i + 1] as? BatchNorm2d,
              layers[i + 2] is ReLU, let pool = layers[i + 3] as? MaxPool2d,
              conv.groups == 1, conv.dilation.allSatisfy({ $0 == 1 }),
              let normWeight = norm.weight, let normBias = norm.bias else { return nil }
        (self.conv, self.norm, self.pool, self.normWeight, self.normBias) = (conv, norm, pool, normWeight, normBias)
    }

    var operands: ConvBlockOperands {
        ConvBlockOperands(weight: conv.weight.value, bias: conv.bias?.value, stride: conv.stride, padding: conv.padding,
                          normWeight: normWeight.value, normBias: normBias.value, eps: norm.eps,
                          poolKernel: [pool.kernelSize], poolStride: [pool.stride], poolPadding: [pool.padding],
                          running: (norm.runningMean.value, norm.runningVar.value))
    }

    /// `blocks` applied to `x` as one fused operation when it applies (every batch norm in
    /// training mode, or all in evaluation without gradients); in training mode the batch
    /// norms' running statistics are updated with the batch statistics. nil otherwise.
    static func run(_ blocks: [ConvBlockLayers], _ x: Tensor) throws -> Tensor? {
        guard let training = blocks.first?.norm.isTraining, blocks.allSatisfy({ $0.norm.isTraining == training }),
              let fused = Tensor.fusedConvBlocks(x, blocks.map(\.operands), training: training) else { return nil }
        if training {
            for (block, statistics) in zip(blocks, fused.statistics) {
                try block.norm.updateRunningStatistics(batchMean: statistics.mean, batchVariance: statistics.variance, count: statistics.count)
            }
        }
        return fused.output
    }
}
