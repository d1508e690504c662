/// The block `Conv2d → BatchNorm2d → ReLU → MaxPool2d` (the seed's ConvNet layers) as one
/// operation on oneDNN, alone or several in a row, in training and in evaluation.

/// One `Conv2d → BatchNorm2d → ReLU → MaxPool2d` block's operands for `Tensor.fusedConvBlocks`:
/// `weight [Cout, Cin, kH, kW]`, `bias [Cout]` or nil, `normWeight` and `normBias [Cout]`;
/// `stride`, `padding` (convolution) and `poolKernel`, `poolStride`, `poolPadding` take one
/// value (both dimensions) or two, as in `conv2d` and `maxPool2d`; `running` is the batch norm's
/// running mean and variance `[Cout]`, used in evaluation (`training: false`).
public struct ConvBlockOperands {
    public var weight: Tensor, bias: Tensor?, stride: [Int], padding: [Int]
    public var normWeight: Tensor, normBias: Tensor, eps: Double
    public var poolKernel: [Int], poolStride: [Int], poolPadding: [Int]
    public var running: (mean: Tensor, variance: Tensor)?

    /// The operands as named above.
    public init(weight: Tensor, bias: Tensor?, stride: [Int], padding: [Int], normWeight: Tensor, normBias: Tensor,
                eps: Double, poolKernel: [Int], poolStride: [Int], poolPadding: [Int],
                running: (mean: Tensor, variance: Tensor)? = nil) {
        self.weight = weight; self.bias = bias; self.stride = stride; self.padding = padding
        self.normWeight = normWeight; self.normBias = normBias; self.eps = eps
        self.poolKernel = poolKernel; self.poolStride = poolStride; self.poolPadding = poolPadding
        self.running = running
    }
}

/// A fused block's batch statistics `[Cout]` (mean and biased variance over `count =
/// N·Hout·Wout` values) for the caller's running averages; in evaluation, the running ones.
public struct ConvBlockStatistics {
    public let mean: [Double], variance: [Double], count: Int
}

extension Tensor {
    /// Training-mode `maxPool2d(relu(batchNorm(conv2d(input, weight, bias), normWeight, normBias)))`
    /// with the intermediates in oneDNN's blocked layout (`DNNLConvBlockPlan`): fewer passes over
    /// memory than the four operations one by one. One block of `fusedConvBlocks`; see there.
    ///
    /// `input [N, Cin, H, W]`, `weight [Cout, Cin, kH, kW]`, `bias [Cout]` or nil, `normWeight` and
    /// `normBias [Cout]` → `output [N, Cout, Hp, Wp]`, with `mean` and `variance [Cout]`, the batch
    /// statistics (biased variance over `count = N·Hout·Wout` values).
    public static func fusedConvBatchNormReLUMaxPool(
        _ input: Tensor, weight: Tensor, bias: Tensor?, stride: [Int], padding: [Int],
        normWeight: Tensor, normBias: Tensor, eps: Double, poolKernel: [Int], poolStride: [Int], poolPadding: [Int],
        training: Bool = true, running: (mean: Tensor, variance: Tensor)? = nil
    ) -> (output: Tensor, mean: [Double], variance: [Double], count: Int)? {
        let block = ConvBlockOperands(weight: weight, bias: bias, stride: stride, padding: padding, normWeight: normWeight,
                                      normBias: normBias, eps: eps, poolKernel: poolKernel, poolStride: poolStride,
                                      poolPadding: poolPadding, running: running)
        guard let fused = fusedConvBlocks(input, [block], training: training), let statistics = fused.statistics.first else {
            return nil
        }
        return (fused.output, statistics.mean, statistics.variance, statistics.count)
    }

    /// `Conv2d → BatchNorm2d → ReLU → MaxPool2d` blocks applied in order, as one operation on
    /// oneDNN: each block's intermediates stay in oneDNN's blocked layout, and so does what
    /// passes from one block to the next (forward and backward), so only `input`, the last
    /// block's output and their gradients are NCHW.
    ///
    /// `input [N, Cin, H, W]` → `output [N, Cout, Hp, Wp]` of the last block, with each block's
    /// statistics in order. The output and the gradients of every operand are those of the
    /// operations one by one up to float32 rounding (a tie inside a pooling window may send the
    /// gradient to another position of the same value).
    ///
    /// With `training: false` each batch norm uses its block's `running` statistics, as in
    /// evaluation, and the statistics returned are those; this runs only where no gradient is
    /// recorded (`withNoGrad`, or no operand and not `input` requires one), since oneDNN's
    /// inference primitives have no backward pass.
    ///
    /// Returns nil when the fused path does not apply: no blocks, a dtype other than float32,
    /// autocast on, shapes the operations would refuse, a configuration oneDNN cannot run (or
    /// cannot pass from one block to the next in its layout), or an inf or NaN in the operands or
    /// the batch statistics (the layers one by one keep NaN as PyTorch does). The caller then runs the
    /// operations one by one, which also report any shape error.
    public static func fusedConvBlocks(_ input: Tensor, _ blocks: [ConvBlockOperands], training: Bool = true)
        -> (output: Tensor, statistics: [ConvBlockStatistics])? {
        guard !blocks.isEmpty, input.dtype == .float32, AutocastPolicy.computesInFloat32(.conv2d), input.rank == 4,
              training || !(GradMode.isEnabled && input.requiresGrad) else { return nil }
        var plans: [DNNLConvBlockPlan] = []
        var counts: [Int] = []
        var shape = input.shape
        let needInput = training && GradMode.isEnabled && input.requiresGrad
        for block in blocks {
            guard let (plan, count) = plan(block, inputShape: shape, training: training,
                                           needInputGradient: plans.isEmpty ? needInput : true),
                  plans.last.map({ $0.chains(into: plan) }) ?? true else { return nil }
            plans.append(plan)
            counts.append(count)
            shape = plan.pooledShape
        }
        let operands = blocks.map { b in
            DNNLConvBlockOperands(weight: b.weight.contiguousStorage().detach(), bias: b.bias?.contiguousStorage().detach(),
                                  scale: b.normWeight.contiguousStorage().detach(), shift: b.normBias.contiguousStorage().detach(),
                                  running: training ? nil : b.running.map { ($0.mean.contiguousStorage().detach(),
                                                                             $0.variance.contiguousStorage().detach()) })
        }
        let x = input.contiguousStorage().detach()
        // With an inf or NaN anywhere the layers run one by one, whose NaN handling is PyTorch's
        // (oneDNN's max pooling makes no promise about NaN), so that it shows in the output.
        if !training {
            let all = [x] + operands.flatMap { [$0.weight, $0.scale, $0.shift] + ($0.bias.map { [$0] } ?? [])
                                                + ($0.running.map { [$0.mean, $0.variance] } ?? []) }
            guard all.allSatisfy({ $0.isAllFinite() }) else { return nil }
        }
        guard let (out, kept) = Kernels.convBlocksForward(plans, input: x, operands: operands) else { return nil }
        guard let saved = kept else {
            let statistics = Swift.zip(operands, counts).map { ops, count in
                ConvBlockStatistics(mean: ops.running?.mean.toDoubleArray() ?? [],
                                    variance: ops.running?.variance.toDoubleArray() ?? [], count: count)
            }
            return (out, statistics)
        }
        let statistics = Swift.zip(saved, counts).map { s, count in
            ConvBlockStatistics(mean: s.norm.mean, variance: s.norm.variance, count: count)
        }
        // In training a non-finite input, weight or bias makes a batch statistic non-finite.
        guard statistics.allSatisfy({ $0.mean.allSatisfy(\.isFinite) && $0.variance.allSatisfy(\.isFinite) }),
              operands.allSatisfy({ $0.scale.isAllFinite() && $0.shift.isAllFinite() }) else { return nil }
        let inputs = [input] + blocks.flatMap { [$0.weight] + ($0.bias.map { [$0] } ?? []) + [$0.normWeight, $0.normBias] }
        let state = ConvBlocksState(saved: saved, needInput: needInput, hasBias: blocks.map { $0.bias != nil },
                                    inputShape: input.shape, outputShape: out.shape)
        let output = Dispatch.record(.convBatchNormReLUMaxPool, out, inputs: inputs, state: state)
        return (output, statistics)
    }

    /// The plan of one block on an input of `inputShape` and the number of values each batch
    /// statistic is taken over; nil when the block's shapes or configuration do not fuse.
    private static func plan(_ block: ConvBlockOperands, inputShape: [Int], training: Bool, needInputGradient: Bool)
        -> (DNNLConvBlockPlan, Int)? {
        let weight = block.weight
        var operands = [weight, block.normWeight, block.normBias] + (block.bias.map { [$0] } ?? [])
        if !training {
            guard let running = block.running, running.mean.shape == [weight.shape.first ?? -1],
                  running.variance.shape == running.mean.shape,
                  !(GradMode.isEnabled && operands.contains(where: \.requiresGrad)) else { return nil }
            operands += [running.mean, running.variance]
        }
        guard operands.allSatisfy({ $0.dtype == .float32 }), weight.rank == 4, inputShape[1] == weight.shape[1],
              block.eps > 0 else { return nil }
        let cout = weight.shape[0]
        guard [block.bias?.shape, block.normWeight.shape, block.normBias.shape].allSatisfy({ $0 == nil || $0! == [cout] }),
              let s = pair(block.stride, minimum: 1), let p = pair(block.padding, minimum: 0),
              let k = pair(block.poolKernel, minimum: 1), let ps = pair(block.poolStride, minimum: 1),
              let pp = pair(block.poolPadding, minimum: 0), pp.0 <= k.0 / 2, pp.1 <= k.1 / 2 else { return nil }
        let geo = ConvGeometry(batch: inputShape[0], inChannels: inputShape[1], height: inputShape[2], width: inputShape[3],
                               outChannels: cout, groups: 1, kernelH: weight.shape[2], kernelW: weight.shape[3],
                               strideH: s.0, strideW: s.1, padH: p.0, padW: p.1, dilationH: 1, dilationW: 1)
        guard geo.batch > 0, cout > 0, geo.kernelH <= geo.height + 2 * geo.padH, geo.kernelW <= geo.width + 2 * geo.padW,
              geo.batch * geo.outHeight * geo.outWidth > 1,
              k.0 <= geo.outHeight + 2 * pp.0, k.1 <= geo.outWidth + 2 * pp.1 else { return nil }
        let key = DNNLConvBlockPlan.Key(geo: geo, hasBias: block.bias != nil, training: training,
                                        needInputGradient: needInputGradient, threads: Tandem.numThreads, eps: block.eps,
                                        pool: .init(kernelH: k.0, kernelW: k.1, strideH: ps.0, strideW: ps.1, padH: pp.0, padW: pp.1))
        return DNNLConvBlockPlan.plan(for: key).map { ($0, geo.batch * geo.outHeight * geo.outWidth) }
    }

    /// One value (both dimensions) or two, each at least `minimum` (`convPair`); nil otherwise.
    private static func pair(_ values: [Int], minimum: Int) -> (Int, Int)? {
        try? convPair(values, "", "fusedConvBlocks", minimum: minimum)
    }
}

/// What the fused conv blocks keep for their gradient: oneDNN's saved forward state.
struct ConvBlocksState: @unchecked Sendable {
    let saved: [DNNLConvBlockSaved]
    let needInput: Bool
    /// Whether each block's convolution has a bias.
    let hasBias: [Bool]
    let inputShape: [Int], outputShape: [Int]
}
