/// The training-mode block `Conv2d → BatchNorm2d → ReLU → MaxPool2d` (the seed's ConvNet layers)
/// as one operation on oneDNN.
extension Tensor {
    /// Training-mode `maxPool2d(relu(batchNorm(conv2d(input, weight, bias), normWeight, normBias)))`
    /// with the intermediates in oneDNN's blocked layout (`DNNLConvBlockPlan`): fewer passes over
    /// memory than the four operations one by one.
    ///
    /// `input [N, Cin, H, W]`, `weight [Cout, Cin, kH, kW]`, `bias [Cout]` or nil, `normWeight` and
    /// `normBias [Cout]` → `output [N, Cout, Hp, Wp]`, with `mean` and `variance [Cout]`, the batch
    /// statistics (biased variance over `count = N·Hout·Wout` values) for the caller's running
    /// averages.
    /// `stride`, `padding` (convolution) and `poolKernel`, `poolStride`, `poolPadding` take one
    /// value (both dimensions) or two, as in `conv2d` and `maxPool2d`. The output and the
    /// gradients of all five tensors are those of the four operations in a row up to float32
    /// rounding (a tie inside a pooling window may send the gradient to another position of the
    /// same value).
    ///
    /// With `training: false` the batch norm uses `running` (mean and variance `[Cout]`), as in
    /// evaluation, and `mean` and `variance` return them; this runs only where no gradient is
    /// recorded (`withNoGrad`), since oneDNN's inference primitives have no backward pass.
    ///
    /// Returns nil when the fused path does not apply: a dtype other than float32, autocast on,
    /// shapes the operations would refuse, a configuration oneDNN cannot run, or an inf or NaN in
    /// the operands or the batch statistics (oneDNN's fused ReLU would turn NaN into 0). The
    /// caller then runs the operations one by one, which also report any shape error.
    public static func fusedConvBatchNormReLUMaxPool(
        _ input: Tensor, weight: Tensor, bias: Tensor?, stride: [Int], padding: [Int],
        normWeight: Tensor, normBias: Tensor, eps: Double, poolKernel: [Int], poolStride: [Int], poolPadding: [Int],
        training: Bool = true, running: (mean: Tensor, variance: Tensor)? = nil
    ) -> (output: Tensor, mean: [Double], variance: [Double], count: Int)? {
        var operands = [input, weight, normWeight, normBias] + (bias.map { [$0] } ?? [])
        if !training {
            guard let running, running.mean.shape == [weight.shape.first ?? -1], running.variance.shape == running.mean.shape,
                  !(GradMode.isEnabled && operands.contains(where: \.requiresGrad)) else { return nil }
            operands += [running.mean, running.variance]
        }
        guard operands.allSatisfy({ $0.dtype == .float32 }), Autocast.castTarget(input) == nil,
              input.rank == 4, weight.rank == 4, input.shape[1] == weight.shape[1], eps > 0 else { return nil }
        let cout = weight.shape[0]
        guard [bias?.shape, normWeight.shape, normBias.shape].allSatisfy({ $0 == nil || $0! == [cout] }),
              let s = pair(stride, minimum: 1), let p = pair(padding, minimum: 0),
              let k = pair(poolKernel, minimum: 1), let ps = pair(poolStride, minimum: 1), let pp = pair(poolPadding, minimum: 0),
              pp.0 <= k.0 / 2, pp.1 <= k.1 / 2 else { return nil }
        let geo = ConvGeometry(batch: input.shape[0], inChannels: input.shape[1], height: input.shape[2], width: input.shape[3],
                               outChannels: cout, groups: 1, kernelH: weight.shape[2], kernelW: weight.shape[3],
                               strideH: s.0, strideW: s.1, padH: p.0, padW: p.1, dilationH: 1, dilationW: 1)
        guard geo.batch > 0, cout > 0, geo.kernelH <= geo.height + 2 * geo.padH, geo.kernelW <= geo.width + 2 * geo.padW,
              geo.batch * geo.outHeight * geo.outWidth > 1,
              k.0 <= geo.outHeight + 2 * pp.0, k.1 <= geo.outWidth + 2 * pp.1 else { return nil }
        let needInput = training && GradMode.isEnabled && input.requiresGrad
        let key = DNNLConvBlockPlan.Key(geo: geo, hasBias: bias != nil, training: training, needInputGradient: needInput,
                                        threads: Tandem.numThreads,
                                        eps: Float(eps),
                                        pool: .init(kernelH: k.0, kernelW: k.1, strideH: ps.0, strideW: ps.1, padH: pp.0, padW: pp.1))
        guard let plan = DNNLConvBlockPlan.plan(for: key) else { return nil }
        let x = input.contiguousStorage().detach(), w = weight.contiguousStorage().detach()
        let b = bias?.contiguousStorage().detach()
        let scale = normWeight.contiguousStorage().detach(), shift = normBias.contiguousStorage().detach()
        let statistics = training ? nil : running.map { ($0.mean.contiguousStorage().detach(), $0.variance.contiguousStorage().detach()) }
        let count = geo.batch * geo.outHeight * geo.outWidth
        // oneDNN's fused ReLU turns NaN into 0 where the layers keep it: with an inf or NaN
        // anywhere the layers run one by one, so that it shows in the output (and the loss).
        if let statistics {
            guard ([x, w, scale, shift, statistics.0, statistics.1] + (b.map { [$0] } ?? [])).allSatisfy({ $0.isAllFinite() })
            else { return nil }
        }
        guard let (out, kept) = Kernels.convBlockForward(plan, input: x, weight: w, bias: b, scale: scale, shift: shift,
                                                         running: statistics) else { return nil }
        guard let saved = kept else {
            return (out, statistics?.0.toDoubleArray() ?? [], statistics?.1.toDoubleArray() ?? [], count)
        }
        let mean = saved.mean.toDoubleArray(), variance = saved.variance.toDoubleArray()
        // In training a non-finite input, weight or bias makes a batch statistic non-finite.
        guard mean.allSatisfy(\.isFinite), variance.allSatisfy(\.isFinite), scale.isAllFinite(), shift.isAllFinite() else { return nil }
        let hasBias = bias != nil
        let inputs = [input, weight] + (bias.map { [$0] } ?? []) + [normWeight, normBias]
        let output = record("convBatchNormReLUMaxPool", out, inputs: inputs) { g in
            let gy = (g.dtype == .float32 ? g : g.to(.float32)).contiguousStorage()
            guard let grads = Kernels.convBlockBackward(saved, gradOut: gy) else {
                throw TensorError.invalidArgument(op: "convBatchNormReLUMaxPool", message: "oneDNN failed in the backward pass of \(geo.inputShape) → \(geo.outputShape)")
            }
            return [needInput ? grads.input : nil, grads.weight] + (hasBias ? [grads.bias] : []) + [grads.scale, grads.shift]
        }
        return (output, mean, variance, count)
    }

    /// One value (both dimensions) or two, each at least `minimum`; nil otherwise.
    private static func pair(_ values: [Int], minimum: Int) -> (Int, Int)? {
        guard values.count == 1 || values.count == 2, values.allSatisfy({ $0 >= minimum }) else { return nil }
        return (values[0], values[values.count - 1])
    }
}
