/// The rules of ops whose backward pass is a backend's kernel: each reads the state its forward
/// pass left and returns one gradient per input (see `Derivatives.backward`).

extension ConvState {
    /// dInput, dWeight (and dBias) on the backend that ran the forward pass.
    func backward(_ g: Tensor) throws -> [Tensor?] {
        let gy = (g.dtype == dtype ? g : g.to(dtype)).contiguousStorage()
        let grads = backward.backward(gradOut: gy, needInput: needs.input, needWeight: needs.weight, needBias: needs.bias)
        return hasBias ? [grads.input, grads.weight, grads.bias] : [grads.input, grads.weight]
    }
}

extension PoolState {
    /// The input gradient: the window maxima's positions get theirs (max), every window shares
    /// its own evenly (average).
    func backward(_ g: Tensor) throws -> Tensor {
        let gy = g.contiguousStorage()
        switch self {
        case let .max(geo, indices, inputShape):
            return try Kernels.maxPool2dBackward(geo, gradOut: gy, indices: indices).reshape(inputShape)
        case let .average(geo, countIncludePad, inputShape):
            return try Kernels.avgPool2dBackward(geo, gradOut: gy, countIncludePad: countIncludePad).reshape(inputShape)
        case let .adaptiveAverage(planes, height, width, outHeight, outWidth, inputShape):
            return try Kernels.adaptiveAvgPool2dBackward(gradOut: gy, planes: planes, height: height, width: width,
                                                         outHeight: outHeight, outWidth: outWidth).reshape(inputShape)
        }
    }
}

extension BatchNormState {
    /// dx (through the batch statistics in training), dweight = Σ g·x̂, dbias = Σ g.
    func backward(_ g: Tensor) throws -> [Tensor?] { Kernels.batchNormBackward(self, gradOut: g) }
}

extension RowNormState {
    /// dx through the row statistics, dweight = Σ g·x̂, dbias = Σ g.
    func backward(_ g: Tensor) throws -> [Tensor?] { Kernels.rowNormBackward(self, gradOut: g) }
}

extension ClassLossState {
    /// Cross entropy: (softmax − smoothed one-hot) · dL/d(row loss); NLL: −dL/d(row loss) at the label.
    func backward(_ g: Tensor) throws -> Tensor { try Kernels.classLossBackward(self, gradOut: g) }
}

extension DepthwiseChannelsLastState {
    /// dInput, dWeight (and dBias) of the channels-last depthwise convolution.
    func backward(_ g: Tensor) throws -> [Tensor?] { Kernels.depthwiseChannelsLastBackward(self, gradOut: g) }
}

extension ConvBlocksState {
    /// The input gradient (when asked for) and each block's weight, bias, scale and shift
    /// gradients, from oneDNN's fused backward pass.
    func backward(_ g: Tensor) throws -> [Tensor?] {
        let gy = (g.dtype == .float32 ? g : g.to(.float32)).contiguousStorage()
        guard let grads = Kernels.convBlocksBackward(saved, gradOut: gy) else {
            throw TensorError.invalidArgument(op: "convBatchNormReLUMaxPool",
                                              message: "oneDNN failed in the backward pass of \(inputShape) → \(outputShape)")
        }
        return [needInput ? grads[0].input : nil] + zip(hasBias, grads).flatMap { hasBias, g in
            [g.weight] + (hasBias ? [g.bias] : []) + [g.scale, g.shift]
        }
    }
}

extension CTCState {
    /// PyTorch's analytic gradient exp(lp) − γ, scaled by the loss gradient of each sample.
    func backward(_ g: Tensor) throws -> Tensor { Kernels.ctcBackward(self, gradOut: g) }
}

extension BSplineState {
    /// `Σ_c g · dB/dx` per (sample, feature).
    func backward(_ g: Tensor) throws -> Tensor { Kernels.bSplineBackward(self, gradOut: g) }
}

extension AttentionState {
    /// dq, dk, dv recomputed tile by tile from the saved log-sum-exps (FlashAttention's backward).
    func backward(_ g: Tensor) throws -> [Tensor?] {
        let gy = try (g.dtype == out.dtype ? g : g.to(out.dtype)).contiguous().reshape(out.shape)
        let (dq, dk, dv) = Kernels.attentionBackward(q, k, v, out: out, lse: lse, gradOut: gy, problem)
        return [try dq.reshape(q.shape), try dk.reshape(k.shape), try dv.reshape(v.shape)]
    }
}
