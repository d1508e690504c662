import CDNNL
import COpenMP
import Foundation
import Synchronization

/// float32 and bfloat16 convolution on oneDNN. bfloat16 plans take bfloat16 source, weights,
/// bias and destination (and their gradients) and accumulate in float32; they are what
/// `autocast(dtype: .bfloat16)` runs.
///
/// Primitives are created once per (geometry, bias, thread count) and cached. They use
/// `format_tag_any`, so oneDNN picks its blocked layouts; Tandem's NCHW/OIHW tensors are
/// reordered in and out, and the blocked source and weights of a forward pass are kept
/// for its backward pass. Backward primitives are created on the first backward pass of a
/// geometry. Whatever oneDNN refuses (creation or execution) returns nil and the caller
/// falls back to im2col.
/// The cached oneDNN primitives of one convolution geometry.
final class DNNLConvPlan: @unchecked Sendable {
    struct Key: Hashable { var geo: ConvGeometry; var hasBias: Bool; var threads: Int; var bfloat16 = false }

    let geo: ConvGeometry
    let hasBias: Bool
    /// dnnl_f32 or dnnl_bf16, for every tensor of the plan.
    let dataType: dnnl_data_type_t
    let plainSrc: dnnl_memory_desc_t, plainWeights: dnnl_memory_desc_t, plainDst: dnnl_memory_desc_t
    let plainBias: dnnl_memory_desc_t
    let forward: DNNL.Primitive
    let src: dnnl_memory_desc_t, weights: dnnl_memory_desc_t, dst: dnnl_memory_desc_t
    let srcIn: DNNL.Conversion, weightsIn: DNNL.Conversion, dstOut: DNNL.Conversion

    struct BackwardData {
        let primitive: DNNL.Primitive
        let diffDst: dnnl_memory_desc_t, weights: dnnl_memory_desc_t, diffSrc: dnnl_memory_desc_t
        let diffDstIn: DNNL.Conversion, weightsIn: DNNL.Conversion, diffSrcOut: DNNL.Conversion
    }

    struct BackwardWeights {
        let primitive: DNNL.Primitive
        let src: dnnl_memory_desc_t, diffDst: dnnl_memory_desc_t, diffWeights: dnnl_memory_desc_t
        let srcIn: DNNL.Conversion, diffDstIn: DNNL.Conversion, diffWeightsOut: DNNL.Conversion
    }

    private let madeBackwardData = DNNL.MadeOnce<BackwardData>()
    private let madeBackwardWeights = DNNL.MadeOnce<BackwardWeights>()

    private var strides: [Int64] { Self.strides(geo) }
    private var dilates: [Int64] { Self.dilates(geo) }
    private var padding: [Int64] { Self.padding(geo) }
    private static func strides(_ geo: ConvGeometry) -> [Int64] { [Int64(geo.strideH), Int64(geo.strideW)] }
    /// oneDNN counts dilation from 0 (no dilation), PyTorch from 1.
    private static func dilates(_ geo: ConvGeometry) -> [Int64] { [Int64(geo.dilationH - 1), Int64(geo.dilationW - 1)] }
    /// Symmetric padding: oneDNN checks `(H + padL + padR − span) / stride + 1 == Hout` with
    /// floor division, the same output size as PyTorch's.
    private static func padding(_ geo: ConvGeometry) -> [Int64] { [Int64(geo.padH), Int64(geo.padW)] }

    private static func weightDims(_ geo: ConvGeometry) -> [Int] {
        geo.groups == 1 ? geo.weightShape
                        : [geo.groups, geo.outPerGroup, geo.inPerGroup, geo.kernelH, geo.kernelW]
    }

    init?(geo: ConvGeometry, hasBias: Bool, dataType: dnnl_data_type_t = dnnl_f32) {
        guard let engine = DNNL.engine, let attributes = DNNL.attributes else { return nil }
        self.geo = geo
        self.hasBias = hasBias
        self.dataType = dataType
        let wDims = Self.weightDims(geo)
        guard let ps = DNNL.memoryDesc(geo.inputShape, dnnl_nchw, dataType),
              let pw = DNNL.memoryDesc(wDims, geo.groups == 1 ? dnnl_oihw : dnnl_goihw, dataType),
              let pd = DNNL.memoryDesc(geo.outputShape, dnnl_nchw, dataType),
              let pb = DNNL.memoryDesc([geo.outChannels], dnnl_x, dataType),
              var anySrc = DNNL.memoryDesc(geo.inputShape, dnnl_format_tag_any, dataType),
              var anyWeights = DNNL.memoryDesc(wDims, dnnl_format_tag_any, dataType),
              var anyDst = DNNL.memoryDesc(geo.outputShape, dnnl_format_tag_any, dataType) else { return nil }
        plainSrc = ps; plainWeights = pw; plainDst = pd; plainBias = pb
        var desc = dnnl_convolution_desc_t()
        var bias = pb
        let (s, d, p) = (Self.strides(geo), Self.dilates(geo), Self.padding(geo))
        let status = hasBias
            ? dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &anySrc,
                                                         &anyWeights, &bias, &anyDst, s, d, p, p)
            : dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &anySrc,
                                                         &anyWeights, nil, &anyDst, s, d, p, p)
        var pdHandle: dnnl_primitive_desc_t?
        guard status == dnnl_success,
              dnnl_primitive_desc_create(&pdHandle, &desc, attributes.handle, engine.handle, nil) == dnnl_success,
              let pdHandle else { return nil }
        guard !DNNL.isReference(pdHandle), !DNNL.isSlowDepthwise(pdHandle, geo) else {
            dnnl_primitive_desc_destroy(pdHandle)
            return nil
        }
        guard let forward = DNNL.Primitive(pd: pdHandle),
              let src = DNNL.query(pdHandle, dnnl_query_src_md),
              let weights = DNNL.query(pdHandle, dnnl_query_weights_md),
              let dst = DNNL.query(pdHandle, dnnl_query_dst_md),
              let srcIn = DNNL.Conversion(from: ps, to: src),
              let weightsIn = DNNL.Conversion(from: pw, to: weights),
              let dstOut = DNNL.Conversion(from: dst, to: pd) else { return nil }
        self.forward = forward
        self.src = src; self.weights = weights; self.dst = dst
        self.srcIn = srcIn; self.weightsIn = weightsIn; self.dstOut = dstOut
    }

    /// The backward-data primitive, made on first use; nil when oneDNN refuses it.
    func backwardData() -> BackwardData? {
        madeBackwardData.value(makeBackwardData)
    }

    /// The backward-weights primitive (with the bias gradient when the plan has a bias).
    func backwardWeights() -> BackwardWeights? {
        madeBackwardWeights.value(makeBackwardWeights)
    }

    private func makeBackwardData() -> BackwardData? {
        guard let engine = DNNL.engine, let attributes = DNNL.attributes,
              var anySrc = DNNL.memoryDesc(geo.inputShape, dnnl_format_tag_any, dataType),
              var anyWeights = DNNL.memoryDesc(Self.weightDims(geo), dnnl_format_tag_any, dataType),
              var anyDst = DNNL.memoryDesc(geo.outputShape, dnnl_format_tag_any, dataType) else { return nil }
        var desc = dnnl_convolution_desc_t()
        let p = padding
        var pd: dnnl_primitive_desc_t?
        guard dnnl_dilated_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &anySrc, &anyWeights, &anyDst,
                                                               strides, dilates, p, p) == dnnl_success,
              dnnl_primitive_desc_create(&pd, &desc, attributes.handle, engine.handle, forward.pd) == dnnl_success, let pd else { return nil }
        guard !DNNL.isReference(pd), !DNNL.isSlowDepthwise(pd, geo) else { dnnl_primitive_desc_destroy(pd); return nil }
        guard let primitive = DNNL.Primitive(pd: pd),
              let diffSrc = DNNL.query(pd, dnnl_query_diff_src_md),
              let weights = DNNL.query(pd, dnnl_query_weights_md),
              let diffDst = DNNL.query(pd, dnnl_query_diff_dst_md),
              let diffDstIn = DNNL.Conversion(from: plainDst, to: diffDst),
              let weightsIn = DNNL.Conversion(from: plainWeights, to: weights),
              let diffSrcOut = DNNL.Conversion(from: diffSrc, to: plainSrc) else { return nil }
        return BackwardData(primitive: primitive, diffDst: diffDst, weights: weights, diffSrc: diffSrc, diffDstIn: diffDstIn,
                            weightsIn: weightsIn, diffSrcOut: diffSrcOut)
    }

    /// Tries the forward pass's source and destination layouts first (no extra reorders), then
    /// plain layouts when the forward source is plain, then lets oneDNN choose.
    private func makeBackwardWeights() -> BackwardWeights? {
        guard let anySrc = DNNL.memoryDesc(geo.inputShape, dnnl_format_tag_any, dataType),
              let anyDst = DNNL.memoryDesc(geo.outputShape, dnnl_format_tag_any, dataType) else { return nil }
        if let made = makeBackwardWeights(src: src, diffDst: dst) { return made }
        // The forward pass kept a few-channel source unblocked: blocking it here would pad the
        // channels to the vector width (8× the work for one channel). Plain layouts run
        // oneDNN's GEMM-based kernel instead.
        if DNNL.equal(src, plainSrc), let made = makeBackwardWeights(src: plainSrc, diffDst: plainDst) { return made }
        return makeBackwardWeights(src: anySrc, diffDst: anyDst)
    }

    private func makeBackwardWeights(src wantedSrc: dnnl_memory_desc_t, diffDst wantedDiffDst: dnnl_memory_desc_t)
        -> BackwardWeights? {
        guard let engine = DNNL.engine, let attributes = DNNL.attributes,
              var anyWeights = DNNL.memoryDesc(Self.weightDims(geo), dnnl_format_tag_any, dataType) else { return nil }
        var srcDesc = wantedSrc, diffDstDesc = wantedDiffDst
        var desc = dnnl_convolution_desc_t()
        var bias = plainBias
        let p = padding
        let status = hasBias
            ? dnnl_dilated_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &srcDesc, &anyWeights, &bias,
                                                                  &diffDstDesc, strides, dilates, p, p)
            : dnnl_dilated_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &srcDesc, &anyWeights, nil,
                                                                  &diffDstDesc, strides, dilates, p, p)
        var pd: dnnl_primitive_desc_t?
        guard status == dnnl_success,
              dnnl_primitive_desc_create(&pd, &desc, attributes.handle, engine.handle, forward.pd) == dnnl_success, let pd else { return nil }
        guard !DNNL.isReference(pd), !DNNL.isSlowDepthwise(pd, geo) else { dnnl_primitive_desc_destroy(pd); return nil }
        guard let primitive = DNNL.Primitive(pd: pd) else { return nil }  // it frees `pd` when it fails
        guard let src = DNNL.query(pd, dnnl_query_src_md),
              let diffWeights = DNNL.query(pd, dnnl_query_diff_weights_md),
              let diffDst = DNNL.query(pd, dnnl_query_diff_dst_md),
              let srcIn = DNNL.Conversion(from: plainSrc, to: src),
              let diffDstIn = DNNL.Conversion(from: plainDst, to: diffDst),
              let diffWeightsOut = DNNL.Conversion(from: diffWeights, to: plainWeights) else { return nil }
        return BackwardWeights(primitive: primitive, src: src, diffDst: diffDst, diffWeights: diffWeights, srcIn: srcIn,
                               diffDstIn: diffDstIn, diffWeightsOut: diffWeightsOut)
    }

    // MARK: Cache

    /// Plans kept before the cache is emptied (shapes in training loops repeat; this bounds odd workloads).
    static let cacheLimit = 512
    private static let cache = DNNL.PlanCache<Key, DNNLConvPlan>(limit: cacheLimit)

    /// The plan for `geo`, made on first use; nil when oneDNN cannot run it.
    static func plan(for geo: ConvGeometry, hasBias: Bool, threads: Int, bfloat16: Bool = false) -> DNNLConvPlan? {
        cache.plan(for: Key(geo: geo, hasBias: hasBias, threads: threads, bfloat16: bfloat16)) { key in
            DNNLConvPlan(geo: key.geo, hasBias: key.hasBias, dataType: key.bfloat16 ? dnnl_bf16 : dnnl_f32)
        }
    }
}

/// What a oneDNN forward pass keeps for its backward pass: the plan and the source and
/// weights in the plan's layouts (buffers, or nil when the plain tensors are used as is).
struct DNNLConvSaved: @unchecked Sendable {
    let plan: DNNLConvPlan
    let src: DNNL.Buffer?
    let weights: DNNL.Buffer?
}

extension Kernels {
    /// float32 or bfloat16 forward on oneDNN: nil when oneDNN cannot run this geometry.
    /// Tensors are contiguous, all of one dtype; `keep` asks for what the backward pass needs.
    static func convForwardDNNL(_ geo: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?,
                                keep: Bool) -> (out: Tensor, saved: DNNLConvSaved?)? {
        guard input.dtype == .float32 || input.dtype == .bfloat16, geo.batch > 0 else { return nil }
        let threads = DNNL.syncThreads()
        guard let plan = DNNLConvPlan.plan(for: geo, hasBias: bias != nil, threads: threads,
                                           bfloat16: input.dtype == .bfloat16) else { return nil }
        let out = Tensor(uninitializedShape: geo.outputShape, dtype: input.dtype)
        let y = out.rawElements
        let (dst, dstBuffer) = plan.dstOut.target(y)
        guard let kept = convForwardDNNL(plan, input: input, weight: weight, bias: bias, into: dst),
              plan.dstOut.finish(dst, y) else { return nil }
        withExtendedLifetime(dstBuffer) {}
        return (out, keep ? DNNLConvSaved(plan: plan, src: kept.src, weights: kept.weights) : nil)
    }

    /// Runs `plan`'s forward primitive, writing its output in `plan.dst`'s layout to `dst`.
    /// Returns the source and weights in the plan's layouts (nil when the plain tensors were
    /// used as they are), or nil when oneDNN fails.
    static func convForwardDNNL(_ plan: DNNLConvPlan, input: Tensor, weight: Tensor, bias: Tensor?,
                                into dst: UnsafeMutableRawPointer) -> (src: DNNL.Buffer?, weights: DNNL.Buffer?)? {
        guard case let (src, srcBuffer)? = plan.srcIn.convert(input.rawElements) else { return nil }
        return convForwardDNNL(plan, source: src, owner: srcBuffer, weight: weight, bias: bias, into: dst)
    }

    /// Runs `plan`'s forward primitive on a source already in `plan.src`'s layout at `source`
    /// (the memory of `owner`, or of a tensor the caller keeps alive when nil), writing its
    /// output in `plan.dst`'s layout to `dst`. Returns `owner` and the weights in the plan's
    /// layout (nil: the plain tensor was used as it is), or nil when oneDNN fails.
    static func convForwardDNNL(_ plan: DNNLConvPlan, source: UnsafeMutableRawPointer, owner: DNNL.Buffer?, weight: Tensor,
                                bias: Tensor?, into dst: UnsafeMutableRawPointer) -> (src: DNNL.Buffer?, weights: DNNL.Buffer?)? {
        guard case let (wts, wBuffer)? = plan.weightsIn.convert(weight.rawElements) else { return nil }
        var args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] =
            [(DNNL.Arg.src, plan.src, source), (DNNL.Arg.weights, plan.weights, wts), (DNNL.Arg.dst, plan.dst, dst)]
        if let bias { args.append((DNNL.Arg.bias, plan.plainBias, bias.rawElements)) }
        let ran = DNNL.execute(plan.forward, args)
        withExtendedLifetime(owner) {}
        return ran ? (owner, wBuffer) : nil
    }

    /// The input gradient (`geo.inputShape`, dtype `dtype`) from a gradient of the output
    /// already in `bd.diffDst`'s layout at `diffDst`. The forward pass's weights in the plan's
    /// layout (`savedWeights`) are used when `bd` wants that layout. nil when oneDNN fails.
    static func convBackwardData(_ plan: DNNLConvPlan, _ bd: DNNLConvPlan.BackwardData, diffDst: UnsafeMutableRawPointer,
                                 weight: Tensor, savedWeights: DNNL.Buffer?, dtype: DType) -> Tensor? {
        let gx = Tensor(uninitializedShape: plan.geo.inputShape, dtype: dtype)
        let (ds, dsBuffer) = bd.diffSrcOut.target(gx.rawElements)
        defer { withExtendedLifetime(dsBuffer) {} }
        guard convBackwardData(plan, bd, diffDst: diffDst, weight: weight, savedWeights: savedWeights, into: ds),
              bd.diffSrcOut.finish(ds, gx.rawElements) else { return nil }
        return gx
    }

    /// The input gradient in `bd.diffSrc`'s layout, written to `diffSrc`; false when oneDNN fails.
    static func convBackwardData(_ plan: DNNLConvPlan, _ bd: DNNLConvPlan.BackwardData, diffDst: UnsafeMutableRawPointer,
                                 weight: Tensor, savedWeights: DNNL.Buffer?, into diffSrc: UnsafeMutableRawPointer) -> Bool {
        guard case let (wp, wBuffer)? = DNNL.reuseOrConvert(weight.rawElements, to: bd.weights, kept: plan.weights,
                                                            saved: savedWeights, conversion: bd.weightsIn) else { return false }
        defer { withExtendedLifetime(wBuffer) {} }
        return DNNL.execute(bd.primitive, [(DNNL.Arg.diffDst, bd.diffDst, diffDst), (DNNL.Arg.weights, bd.weights, wp),
                                           (DNNL.Arg.diffSrc, bd.diffSrc, diffSrc)])
    }

    /// The weight gradient (`geo.weightShape`) and, when the plan has a bias, the bias gradient
    /// `[Cout]` (dtype `dtype`) from a gradient of the output already in `bw.diffDst`'s layout
    /// at `diffDst`. The forward source in the plan's layout (`savedSrc`) is used when `bw`
    /// wants that layout, else the plain `input` (nil: the forward pass had none, and then only
    /// `savedSrc` will do). nil when oneDNN fails.
    static func convBackwardWeights(_ plan: DNNLConvPlan, _ bw: DNNLConvPlan.BackwardWeights, diffDst: UnsafeMutableRawPointer,
                                    input: Tensor?, savedSrc: DNNL.Buffer?, dtype: DType) -> (weight: Tensor, bias: Tensor?)? {
        guard case let (sp, sBuffer)? = DNNL.reuseOrConvert(input?.rawElements, to: bw.src, kept: plan.src,
                                                            saved: savedSrc, conversion: bw.srcIn) else { return nil }
        let gw = Tensor(uninitializedShape: plan.geo.weightShape, dtype: dtype)
        let gb = plan.hasBias ? Tensor(uninitializedShape: [plan.geo.outChannels], dtype: dtype) : nil
        let (dw, dwBuffer) = bw.diffWeightsOut.target(gw.rawElements)
        defer { withExtendedLifetime((sBuffer, dwBuffer, gb)) {} }
        var args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] =
            [(DNNL.Arg.src, bw.src, sp), (DNNL.Arg.diffDst, bw.diffDst, diffDst), (DNNL.Arg.diffWeights, bw.diffWeights, dw)]
        if let gb { args.append((DNNL.Arg.diffBias, plan.plainBias, gb.rawElements)) }
        guard DNNL.execute(bw.primitive, args), bw.diffWeightsOut.finish(dw, gw.rawElements) else { return nil }
        return (gw, gb)
    }

    /// float32 or bfloat16 backward on oneDNN (gradients in the input's dtype), falling back
    /// to the portable kernels for any part oneDNN refuses (in float32 for bfloat16, then rounded).
    static func convBackwardDNNL(_ saved: DNNLConvSaved, input: Tensor, weight: Tensor, gradOut: Tensor,
                                 needInput: Bool, needWeight: Bool, needBias: Bool)
        -> (input: Tensor?, weight: Tensor?, bias: Tensor?) {
        let plan = saved.plan, geo = plan.geo
        _ = DNNL.syncThreads()
        let gy = gradOut.rawElements
        var gradInput: Tensor?, gradWeight: Tensor?, gradBias: Tensor?
        var convertedDiffDst: (desc: dnnl_memory_desc_t, pointer: UnsafeMutableRawPointer, buffer: DNNL.Buffer?)?

        if needInput, let bd = plan.backwardData(), case let (dd, ddBuffer)? = bd.diffDstIn.convert(gy) {
            gradInput = convBackwardData(plan, bd, diffDst: dd, weight: weight, savedWeights: saved.weights, dtype: input.dtype)
            convertedDiffDst = (bd.diffDst, dd, ddBuffer)
        }

        if needWeight, let bw = plan.backwardWeights() {
            var diffDst: (UnsafeMutableRawPointer, DNNL.Buffer?)?
            if let c = convertedDiffDst, DNNL.equal(c.desc, bw.diffDst) {
                diffDst = (c.pointer, c.buffer)
            } else {
                diffDst = bw.diffDstIn.convert(gy)
            }
            if case let (dd, ddBuffer)? = diffDst,
               let grads = convBackwardWeights(plan, bw, diffDst: dd, input: input, savedSrc: saved.src, dtype: input.dtype) {
                gradWeight = grads.weight
                if needBias { gradBias = grads.bias }
                withExtendedLifetime(ddBuffer) {}
            }
        }
        withExtendedLifetime(convertedDiffDst?.buffer) {}

        let missingInput = needInput && gradInput == nil
        let missingWeight = needWeight && gradWeight == nil
        let missingBias = needBias && gradBias == nil
        if missingInput || missingWeight || missingBias {
            let low = input.dtype == .bfloat16
            func wide(_ t: Tensor) -> Tensor { low ? convert(t, to: .float32) : t }
            func back(_ t: Tensor?) -> Tensor? { low ? t.map { convert($0, to: .bfloat16) } : t }
            let rest = convBackwardPortable(geo, input: wide(input), weight: wide(weight), gradOut: wide(gradOut),
                                          needInput: missingInput, needWeight: missingWeight, needBias: missingBias)
            gradInput = gradInput ?? back(rest.input)
            gradWeight = gradWeight ?? back(rest.weight)
            gradBias = gradBias ?? back(rest.bias)
        }
        return (gradInput, gradWeight, gradBias)
    }
}

extension Tensor {
    /// The address of element `[0, 0, ...]`, untyped (for oneDNN, whatever the dtype).
    var rawElements: UnsafeMutableRawPointer { storage.bytes + offset * dtype.byteSize }
    /// `rawElements` of a float32 tensor.
    var floatElements: UnsafeMutablePointer<Float> { rawElements.assumingMemoryBound(to: Float.self) }
}
