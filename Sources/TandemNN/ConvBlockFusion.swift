import TandemCore

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

    /// `blocks` applied to `x` as one fused operation (`Tensor.fusedConvBlocks`) when it
    /// applies (every batch norm in training mode, or all in evaluation without gradients); in
    /// training mode the running statistics are updated as the batch norms' own forward passes
    /// would. nil otherwise: the caller runs the layers one by one.
    static func run(_ blocks: [ConvBlockLayers], _ x: Tensor) throws -> Tensor? {
        guard let training = blocks.first?.norm.isTraining, blocks.allSatisfy({ $0.norm.isTraining == training }),
              let fused = Tensor.fusedConvBlocks(x, blocks.map(\.operands), training: training) else { return nil }
        if training {
            for (block, statistics) in zip(blocks, fused.statistics) {
                try block.norm.accumulate(batchMean: statistics.mean, batchVariance: statistics.variance, count: statistics.count)
            }
        }
        return fused.output
    }
}

extension Sequential {
    /// The fused blocks in a row starting at `layers[i]`, applied to `x`: the output and the
    /// number of layers they replace, or nil (no block there, or the fused path does not apply;
    /// the caller runs the layers one by one). When a row of blocks does not fuse as a whole,
    /// its first block alone is tried.
    func fusedConvBlocks(at i: Int, _ x: Tensor) throws -> (output: Tensor, layers: Int)? {
        var blocks: [ConvBlockLayers] = []
        while let block = ConvBlockLayers(layers, at: i + 4 * blocks.count) { blocks.append(block) }
        guard !blocks.isEmpty else { return nil }
        if let output = try ConvBlockLayers.run(blocks, x) { return (output, 4 * blocks.count) }
        if blocks.count > 1, let output = try ConvBlockLayers.run([blocks[0]], x) { return (output, 4) }
        return nil
    }

    /// `parts` applied to `x` in order. When every part is made only of `Conv2d, BatchNorm2d,
    /// ReLU, MaxPool2d` blocks (as the seed ConvNet's `layer1` and `layer2`), all their blocks
    /// run as one fused operation that passes the intermediate outputs in oneDNN's layout
    /// (`Tensor.fusedConvBlocks`) when it applies.
    public static func chained(_ parts: [Sequential], _ x: Tensor) throws -> Tensor {
        let blocks = parts.map { part in
            stride(from: 0, to: part.layers.count, by: 4).compactMap { ConvBlockLayers(part.layers, at: $0) }
        }
        if parts.count > 1, zip(parts, blocks).allSatisfy({ $0.layers.count == 4 * $1.count && !$1.isEmpty }),
           let output = try ConvBlockLayers.run(blocks.flatMap { $0 }, x) {
            return output
        }
        return try parts.reduce(x) { try $1($0) }
    }
}
