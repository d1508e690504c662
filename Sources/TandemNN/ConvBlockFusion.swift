import TandemCore

extension Sequential {
    /// `layers[i ..< i + 4]` applied to `x` as one fused operation when they are `Conv2d`,
    /// `BatchNorm2d` (affine), `ReLU` and `MaxPool2d` and the fused path applies (training mode,
    /// or evaluation without gradients); in training mode the batch norm's running statistics
    /// are updated as its own forward pass would. nil otherwise: the caller runs the layers one
    /// by one.
    func fusedConvBlock(at i: Int, _ x: Tensor) throws -> Tensor? {
        guard i + 3 < layers.count, let conv = layers[i] as? Conv2d, let norm = layers[i + 1] as? BatchNorm2d,
              layers[i + 2] is ReLU, let pool = layers[i + 3] as? MaxPool2d,
              conv.groups == 1, conv.dilation.allSatisfy({ $0 == 1 }),
              let normWeight = norm.weight, let normBias = norm.bias else { return nil }
        guard let fused = Tensor.fusedConvBatchNormReLUMaxPool(
            x, weight: conv.weight.value, bias: conv.bias?.value, stride: conv.stride, padding: conv.padding,
            normWeight: normWeight.value, normBias: normBias.value, eps: norm.eps,
            poolKernel: [pool.kernelSize], poolStride: [pool.stride], poolPadding: [pool.padding],
            training: norm.isTraining, running: (norm.runningMean.value, norm.runningVar.value)) else { return nil }
        if norm.isTraining {
            try norm.accumulate(batchMean: fused.mean, batchVariance: fused.variance, count: fused.count)
        }
        return fused.output
    }
}
