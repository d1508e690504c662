/// How an op treats float16 and bfloat16 operands, with autocast on or off.
enum PrecisionRule: Sendable {
    /// PyTorch's autocast *lower-precision* list. Under `autocast`, float32 operands are first
    /// converted to the autocast dtype, so the result has it. bfloat16 operands run on a
    /// bfloat16 kernel where a backend has one (the op falls back to float32 itself); float16
    /// operands compute in float32 on the exactly widened values and the result is rounded.
    case lowerPrecision
    /// PyTorch's *fp32* list: low-precision operands compute in float32 and the result stays
    /// float32 (reductions, softmax, normalisation, losses, pooling, scans).
    case float32
    /// Every other computing op: low-precision operands compute in float32, and the result is
    /// rounded back when every floating operand has the same low dtype (PyTorch keeps a float16
    /// tensor's dtype; float16 with float32 promotes to float32).
    case keepDType
    /// Views, copies, conversions and indexing handle every dtype themselves.
    case passThrough
}

/// The one table of precision rules, as PyTorch's autocast op lists are.
enum AutocastPolicy {
    /// Whether `op` on float32 operands computes in float32 now: autocast is off, or the op is not
    /// on its lower-precision list. (A fused float32 pattern of such ops applies only then.)
    static func computesInFloat32(_ op: Op) -> Bool { Autocast.dtype == nil || rule(for: op) != .lowerPrecision }

    static func rule(for op: Op) -> PrecisionRule {
        switch op {
        case .matmul, .linear, .bmm, .einsum, .conv1d, .conv2d, .depthwiseConv2dChannelsLast, .scaledDotProductAttention:
            return .lowerPrecision
        case .sum, .amax, .amin, .max, .min, .prod, .cumsum, .cumprod, .softmax, .logSoftmax,
             .maxPool2d, .avgPool2d, .adaptiveAvgPool2d, .batchNorm, .layerNorm, .rmsNorm, .groupNorm,
             .crossEntropy, .nllLoss, .ctcLoss, .mseLoss, .binaryCrossEntropyWithLogits:
            return .float32
        case .add, .sub, .mul, .div, .pow, .maximum, .minimum, .neg, .exp, .log, .sqrt, .rsqrt, .abs, .sign,
             .log1p, .expm1, .clamp, .powScalar, .relu, .sigmoid, .tanh, .silu, .gelu, .geluTanh, .softplus,
             .rotaryEmbedding, .dropout:
            return .keepDType
        case .where, .pad, .reshape, .permute, .expand, .slice, .contiguous, .to, .cat, .indexSelect, .gather, .scatterAdd,
             .embedding, .bSplineBases, .convBatchNormReLUMaxPool:
            return .passThrough
        }
    }
}
