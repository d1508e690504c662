import CDNNL
import Foundation
import Synchronization

/// The block `Conv2d → BatchNorm2d → ReLU → MaxPool2d`, float32, with every intermediate in
/// oneDNN's channel-blocked layout.
///
/// Run layer by layer, the block reorders the convolution's blocked output to NCHW for the
/// batch norm and reorders gradients back for the convolution's backward pass: two extra
/// passes over the largest activation of the block in each direction. Here the convolution
/// writes its blocked output, Tandem's batch norm with ReLU (`Kernels.blockedNormReLU`, whose
/// statistics are as accurate as the layers' on every ISA, where oneDNN's are not) and
/// oneDNN's max pooling (argmax kept as one byte per output) read and write that layout, and
/// only the pooled output (a quarter of the size for 2×2 pooling) is reordered to NCHW; the
/// backward pass mirrors it. An inference plan (evaluation) normalises with the running
/// statistics and keeps nothing for a backward pass. All primitives of a shape are made at the
/// first forward pass and cached; when oneDNN refuses any of them, would run a reference
/// (naive) implementation, or picks a layout other than `nChw8c`/`nChw16c` (any block of 8k
/// channels), there is no plan and the caller runs the layers one by one. Blocks in a row can
/// pass their pooled output and its gradient in the blocked layout (`chains(into:)`,
/// `Kernels.convBlocksForward`): only the last block's output and the first block's input
/// gradient are then NCHW.
final class DNNLConvBlockPlan: @unchecked Sendable {
    struct Key: Hashable {
        var geo: ConvGeometry
        var hasBias: Bool
        /// Training (batch statistics, a backward pass) or inference (running statistics).
        var training: Bool
        var needInputGradient: Bool
        var threads: Int
        var eps: Double
        var pool: PoolWindow
    }

    /// A max-pooling window over the convolution's output.
    struct PoolWindow: Hashable, Sendable {
        var kernelH: Int, kernelW: Int, strideH: Int, strideW: Int, padH: Int, padW: Int
    }

    /// The primitives and layouts only a training plan has.
    struct Backward {
        let poolBackward: DNNL.Primitive
        /// What the pooling keeps for its backward pass: the argmax.
        let poolWorkspace: dnnl_memory_desc_t
        /// The NCHW gradient into the pooled layout.
        let pooledIn: DNNL.Conversion
        let weights: DNNLConvPlan.BackwardWeights
        /// The batch norm's input gradient into the layout the weight gradient wants.
        let diffForWeights: DNNL.Conversion
        let data: DNNLConvPlan.BackwardData?
        let diffForData: DNNL.Conversion?
    }

    let conv: DNNLConvPlan
    let eps: Double
    /// The convolution's blocked output, which is also the layout of the batch norm and the
    /// pooling input (and of their gradients).
    var blocked: dnnl_memory_desc_t { conv.dst }
    /// `blocked` as the batch-norm kernels see it.
    let layout: ChannelBlockedLayout
    let poolForward: DNNL.Primitive
    let pooled: dnnl_memory_desc_t
    /// `[N, C, Hp, Wp]`, the block's output.
    let pooledShape: [Int]
    /// The pooled output to NCHW.
    let pooledOut: DNNL.Conversion
    /// nil for an inference plan.
    let backward: Backward?

    init?(key: Key) {
        let geo = key.geo, window = key.pool
        guard let engine = DNNL.engine, let attributes = DNNL.attributes,
              let conv = DNNLConvPlan.plan(for: geo, hasBias: key.hasBias, threads: key.threads),
              let layout = DNNL.channelBlockedLayout(conv.dst) else { return nil }
        self.conv = conv
        self.layout = layout
        eps = key.eps
        let (h, w) = (geo.outHeight, geo.outWidth)
        let outH = (h + 2 * window.padH - window.kernelH) / window.strideH + 1
        let outW = (w + 2 * window.padW - window.kernelW) / window.strideW + 1
        guard outH >= 1, outW >= 1,
              let plainPooled = DNNL.memoryDesc([geo.batch, geo.outChannels, outH, outW], dnnl_nchw),
              var anyPooled = DNNL.memoryDesc([geo.batch, geo.outChannels, outH, outW], dnnl_format_tag_any) else { return nil }
        pooledShape = [geo.batch, geo.outChannels, outH, outW]
        var data = conv.dst
        let prop = key.training ? dnnl_forward_training : dnnl_forward_inference

        func make(_ desc: UnsafeRawPointer, hint: dnnl_primitive_desc_t?) -> DNNL.Primitive? {
            var pd: dnnl_primitive_desc_t?
            guard dnnl_primitive_desc_create(&pd, desc, attributes.handle, engine.handle, hint) == dnnl_success,
                  let pd else { return nil }
            guard !DNNL.isReference(pd) else { dnnl_primitive_desc_destroy(pd); return nil }
            return DNNL.Primitive(pd: pd)
        }
        /// Whether the primitive's memory `what` has exactly the layout `md`.
        func has(_ primitive: DNNL.Primitive, _ what: dnnl_query_t, _ md: dnnl_memory_desc_t) -> Bool {
            DNNL.query(primitive.pd, what).map { DNNL.equal($0, md) } ?? false
        }

        let strides: [Int64] = [Int64(window.strideH), Int64(window.strideW)]
        let kernel: [Int64] = [Int64(window.kernelH), Int64(window.kernelW)]
        let padL: [Int64] = [Int64(window.padH), Int64(window.padW)]
        // Floor mode: oneDNN checks `(size + padL + padR − kernel) / stride + 1 == output` with
        // integer division, which the symmetric padding meets by the definition of outH and outW
        // (also when the last rows or columns fit no window).
        let padR = padL
        var poolDesc = dnnl_pooling_desc_t()
        guard dnnl_pooling_forward_desc_init(&poolDesc, prop, dnnl_pooling_max, &data, &anyPooled,
                                             strides, kernel, padL, padR) == dnnl_success,
              let poolForward = withUnsafePointer(to: &poolDesc, { make($0, hint: nil) }),
              let pooled = DNNL.query(poolForward.pd, dnnl_query_dst_md),
              let pooledOut = DNNL.Conversion(from: pooled, to: plainPooled) else { return nil }
        self.poolForward = poolForward
        self.pooled = pooled
        self.pooledOut = pooledOut
        guard key.training else { backward = nil; return }

        var diffData = conv.dst, diffPooled = pooled
        var poolBackwardDesc = dnnl_pooling_desc_t()
        guard let poolWorkspace = DNNL.query(poolForward.pd, dnnl_query_workspace_md),
              dnnl_pooling_backward_desc_init(&poolBackwardDesc, dnnl_pooling_max, &diffData, &diffPooled, strides, kernel,
                                              padL, padR) == dnnl_success,
              let poolBackward = withUnsafePointer(to: &poolBackwardDesc, { make($0, hint: poolForward.pd) }),
              has(poolBackward, dnnl_query_diff_src_md, conv.dst), has(poolBackward, dnnl_query_diff_dst_md, pooled),
              let pooledIn = DNNL.Conversion(from: plainPooled, to: pooled),
              let weights = conv.backwardWeights(),
              let diffForWeights = DNNL.Conversion(from: conv.dst, to: weights.diffDst) else { return nil }
        var dataBackward: DNNLConvPlan.BackwardData?, diffForData: DNNL.Conversion?
        if key.needInputGradient {
            guard let made = conv.backwardData(), let conversion = DNNL.Conversion(from: conv.dst, to: made.diffDst) else { return nil }
            dataBackward = made
            diffForData = conversion
        }
        backward = Backward(poolBackward: poolBackward, poolWorkspace: poolWorkspace, pooledIn: pooledIn, weights: weights,
                            diffForWeights: diffForWeights, data: dataBackward, diffForData: diffForData)
    }

    /// Whether `next` can read this block's pooled output as it is and hand its input gradient
    /// back in this block's pooled layout: the pooled layout is `next`'s convolution source,
    /// and (training) its backward-data primitive writes that layout and its backward-weights
    /// primitive reads the source the forward pass kept. Both plans train, or neither does.
    func chains(into next: DNNLConvBlockPlan) -> Bool {
        guard pooledShape == next.conv.geo.inputShape, DNNL.equal(pooled, next.conv.src),
              (backward == nil) == (next.backward == nil) else { return false }
        guard let nextBackward = next.backward else { return true }
        guard let data = nextBackward.data else { return false }
        return DNNL.equal(data.diffSrc, pooled) && DNNL.equal(nextBackward.weights.src, next.conv.src)
    }

    // MARK: Cache

    private static let cache = DNNL.PlanCache<Key, DNNLConvBlockPlan>(limit: DNNLConvPlan.cacheLimit)

    /// The plan for `key`, made on first use; nil when oneDNN cannot run the block.
    static func plan(for key: Key) -> DNNLConvBlockPlan? {
        cache.plan(for: key) { DNNLConvBlockPlan(key: $0) }
    }
}

/// A block's convolution, batch-norm and bias operands (contiguous float32, detached).
struct DNNLConvBlockOperands: @unchecked Sendable {
    let weight: Tensor, bias: Tensor?, scale: Tensor, shift: Tensor
    /// The running mean and variance `[C]` for an inference plan, nil for a training plan.
    let running: (mean: Tensor, variance: Tensor)?
}

/// What the fused block's forward pass keeps for its backward pass.
struct DNNLConvBlockSaved: @unchecked Sendable {
    let plan: DNNLConvBlockPlan
    /// The plain NCHW input; nil when the block read the previous block's pooled output.
    let input: Tensor?
    let weight: Tensor, scale: Tensor
    /// The convolution's source in its layout (the reordered input, or the previous block's
    /// pooled output) and weights in its layout; nil: the plain tensor is used as it is.
    let src: DNNL.Buffer?, weights: DNNL.Buffer?
    /// The convolution's blocked output: the batch norm's input.
    let convolved: DNNL.Buffer
    /// The batch statistics and the normalisation they gave.
    let norm: BlockedNormMap
    let poolWorkspace: DNNL.Buffer
}

/// Where a block's convolution reads: the plain input, or the previous block's pooled output
/// (in this block's convolution source layout, `DNNLConvBlockPlan.chains(into:)`).
enum DNNLConvBlockSource {
    case plain(Tensor)
    case chained(DNNL.Buffer)
}

/// A block's gradients: input (plain for the first block of a chain, in the previous block's
/// pooled layout for the others; nil when not asked for), convolution weight and bias,
/// batch-norm weight and bias.
struct DNNLConvBlockGradients {
    var input: Tensor?, chainedInput: DNNL.Buffer?
    var weight: Tensor, bias: Tensor?, scale: Tensor, shift: Tensor
}

extension Kernels {
    /// Fused blocks in a row (each plan `chains(into:)` the next) on a contiguous float32
    /// input: the last block's pooled output `[N, C, Hp, Wp]` and, for training plans, what each
    /// block's backward pass needs, with its batch mean and biased variance `[C]` (float32).
    /// Inference plans normalise with the operands' running statistics. nil when oneDNN fails
    /// (the caller runs the layers one by one).
    static func convBlocksForward(_ plans: [DNNLConvBlockPlan], input: Tensor, operands: [DNNLConvBlockOperands])
        -> (out: Tensor, saved: [DNNLConvBlockSaved]?)? {
        guard let last = plans.last, plans.count == operands.count else { return nil }
        _ = DNNL.syncThreads()
        let out = Tensor(uninitializedShape: last.pooledShape, dtype: .float32)
        let (lastPooled, lastPooledBuffer) = last.pooledOut.target(out.rawElements)
        var saved: [DNNLConvBlockSaved] = []
        var source = DNNLConvBlockSource.plain(input)
        for (i, (plan, ops)) in Swift.zip(plans, operands).enumerated() {
            // Inner blocks pool into a buffer the next block reads; the last one into `out`.
            let pooled = i == plans.count - 1 ? nil : DNNL.Buffer(bytes: DNNL.byteSize(plan.pooled))
            guard convBlockForward(plan, source: source, operands: ops, pooledInto: pooled?.pointer ?? lastPooled,
                                   saving: &saved) else { return nil }
            if let pooled { source = .chained(pooled) }
        }
        guard last.pooledOut.finish(lastPooled, out.rawElements) else { return nil }
        withExtendedLifetime(lastPooledBuffer) {}
        return (out, last.backward == nil ? nil : saved)
    }

    /// One block's forward pass, writing the pooled output in `plan.pooled`'s layout to
    /// `pooledInto` and, for a training plan, appending what its backward pass needs to
    /// `saving`. False when oneDNN fails.
    private static func convBlockForward(_ plan: DNNLConvBlockPlan, source: DNNLConvBlockSource,
                                         operands ops: DNNLConvBlockOperands, pooledInto pooled: UnsafeMutableRawPointer,
                                         saving: inout [DNNLConvBlockSaved]) -> Bool {
        let training = plan.backward
        guard (training == nil) == (ops.running != nil) else { return false }
        let convolved = DNNL.Buffer(bytes: DNNL.byteSize(plan.blocked))
        let kept: (src: DNNL.Buffer?, weights: DNNL.Buffer?)?
        switch source {
        case .plain(let input):
            kept = convForwardDNNL(plan.conv, input: input, weight: ops.weight, bias: ops.bias, into: convolved.pointer)
        case .chained(let buffer):
            kept = convForwardDNNL(plan.conv, source: buffer.pointer, owner: buffer, weight: ops.weight, bias: ops.bias,
                                   into: convolved.pointer)
        }
        guard let kept else { return false }

        let (w, b) = (ops.scale.floatElements, ops.shift.floatElements)
        let norm = if let running = ops.running {
            Kernels.blockedBatchNormMap(plan.layout, eps: plan.eps, mean: running.mean.floatElements,
                                        variance: running.variance.floatElements, weight: w, bias: b)
        } else {
            Kernels.blockedBatchNormStatistics(convolved.floats, plan.layout, eps: plan.eps, weight: w, bias: b)
        }
        let normalized = DNNL.Buffer(bytes: DNNL.byteSize(plan.blocked))
        Kernels.blockedNormReLU(convolved.floats, normalized.floats, plan.layout, norm)

        let poolWorkspace = training.map { DNNL.Buffer(bytes: DNNL.byteSize($0.poolWorkspace)) }
        var poolArgs: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] =
            [(DNNL.Arg.src, plan.blocked, normalized.pointer), (DNNL.Arg.dst, plan.pooled, pooled)]
        if let training, let poolWorkspace { poolArgs.append((DNNL.Arg.workspace, training.poolWorkspace, poolWorkspace.pointer)) }
        guard DNNL.execute(plan.poolForward, poolArgs) else { return false }
        withExtendedLifetime((convolved, normalized, ops)) {}
        guard let poolWorkspace else { return true }
        let plainInput: Tensor? = if case .plain(let input) = source { input } else { nil }
        saving.append(DNNLConvBlockSaved(plan: plan, input: plainInput, weight: ops.weight, scale: ops.scale,
                                         src: kept.src, weights: kept.weights, convolved: convolved, norm: norm,
                                         poolWorkspace: poolWorkspace))
        return true
    }

    /// The backward pass of fused blocks in a row from the gradient of the last pooled output
    /// (contiguous float32 NCHW): each block's gradients, in order (the first block's input
    /// gradient when its plan was made for it). nil when oneDNN fails.
    static func convBlocksBackward(_ saved: [DNNLConvBlockSaved], gradOut: Tensor) -> [DNNLConvBlockGradients]? {
        guard let last = saved.last?.plan.backward else { return nil }
        _ = DNNL.syncThreads()
        guard case var (diffPooled, diffBuffer)? = last.pooledIn.convert(gradOut.rawElements) else { return nil }
        var gradients: [DNNLConvBlockGradients] = []
        for block in saved.reversed() {
            // `diffBuffer` owns the memory at `diffPooled` (nil: `gradOut` itself).
            let made = withExtendedLifetime(diffBuffer) { convBlockBackward(block, diffPooled: diffPooled) }
            guard let grads = made else { return nil }
            gradients.append(grads)
            diffBuffer = grads.chainedInput
            diffPooled = diffBuffer?.pointer ?? diffPooled
        }
        withExtendedLifetime(gradOut) {}
        return gradients.reversed()
    }

    /// One block's backward pass from the gradient of its pooled output in `plan.pooled`'s
    /// layout. A chained block (no plain input) gives its input gradient in its convolution's
    /// backward-data layout, which `chains(into:)` made the previous block's pooled layout.
    private static func convBlockBackward(_ saved: DNNLConvBlockSaved, diffPooled: UnsafeMutableRawPointer)
        -> DNNLConvBlockGradients? {
        let plan = saved.plan, conv = plan.conv
        guard let backward = plan.backward else { return nil }
        let diffNormalized = DNNL.Buffer(bytes: DNNL.byteSize(plan.blocked))
        guard DNNL.execute(backward.poolBackward, [(DNNL.Arg.diffDst, plan.pooled, diffPooled),
                                                   (DNNL.Arg.workspace, backward.poolWorkspace, saved.poolWorkspace.pointer),
                                                   (DNNL.Arg.diffSrc, plan.blocked, diffNormalized.pointer)]) else { return nil }

        let diffConvolved = DNNL.Buffer(bytes: DNNL.byteSize(plan.blocked))
        let normGrads = Kernels.blockedBatchNormReLUBackward(saved.convolved.floats, gradOut: diffNormalized.floats,
                                                             gradIn: diffConvolved.floats, plan.layout, saved.norm,
                                                             weight: saved.scale.floatElements)
        withExtendedLifetime((diffNormalized, saved.scale)) {}
        let gradScale = Tensor(normGrads.weight, shape: [plan.layout.channels])
        let gradShift = Tensor(normGrads.bias, shape: [plan.layout.channels])

        var gradInput: Tensor?, chainedInput: DNNL.Buffer?
        var forData: (desc: dnnl_memory_desc_t, buffer: DNNL.Buffer?)?
        if let bd = backward.data, let diffIn = backward.diffForData {
            guard case let (dd, ddBuffer)? = diffIn.convert(diffConvolved.pointer) else { return nil }
            forData = (bd.diffDst, ddBuffer)
            if saved.input == nil {
                let buffer = DNNL.Buffer(bytes: DNNL.byteSize(bd.diffSrc))
                guard convBackwardData(conv, bd, diffDst: dd, weight: saved.weight, savedWeights: saved.weights,
                                       into: buffer.pointer) else { return nil }
                chainedInput = buffer
            } else {
                guard let gx = convBackwardData(conv, bd, diffDst: dd, weight: saved.weight, savedWeights: saved.weights,
                                                dtype: .float32) else { return nil }
                gradInput = gx
            }
        }
        // The weight gradient reuses the data gradient's copy of the output gradient when it
        // wants the same layout.
        let forWeights = forData.map {
            DNNL.reuseOrConvert(diffConvolved.pointer, to: backward.weights.diffDst, kept: $0.desc, saved: $0.buffer,
                                conversion: backward.diffForWeights)
        } ?? backward.diffForWeights.convert(diffConvolved.pointer)
        guard case let (dd, ddBuffer)? = forWeights,
              let grads = convBackwardWeights(conv, backward.weights, diffDst: dd, input: saved.input, savedSrc: saved.src,
                                              dtype: .float32) else { return nil }
        withExtendedLifetime((ddBuffer, diffConvolved, forData?.buffer)) {}
        return DNNLConvBlockGradients(input: gradInput, chainedInput: chainedInput, weight: grads.weight, bias: grads.bias,
                                      scale: gradScale, shift: gradShift)
    }
}
