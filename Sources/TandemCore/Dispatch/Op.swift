/// The ops that pass through `Dispatch`, named as their graph nodes are (`GradNode.name`).
///
/// Primitives record a graph node whose gradient is their rule in `Derivatives`. Composite ops
/// (`linear`, `bmm`, `einsum`, the losses built from primitives) record nothing of their own;
/// they are listed for their precision rule in `AutocastPolicy`, and the fused pattern of a
/// composite (`convBatchNormReLUMaxPool`) records one node whose rule is the fused backward.
enum Op: String, CaseIterable, Sendable {
    // Elementwise, two operands with broadcasting.
    case add, sub, mul, div, pow, maximum, minimum, `where`
    // Elementwise, one operand.
    case neg, exp, log, sqrt, rsqrt, abs, sign, log1p, expm1, clamp, powScalar
    case relu, sigmoid, tanh, silu, gelu, geluTanh = "gelu_tanh", softplus
    // Reductions and scans.
    case sum, amax, amin, max, min, prod, cumsum, cumprod
    // Views, layout and dtype.
    case reshape, permute, expand, slice, contiguous, to, cat, pad
    // Indexing.
    case indexSelect, gather, scatterAdd, embedding
    // Products and convolutions.
    case matmul, conv1d, conv2d, depthwiseConv2dChannelsLast
    // Attention.
    case scaledDotProductAttention, rotaryEmbedding, dropout
    // Softmax.
    case softmax, logSoftmax
    // Pooling.
    case maxPool2d, avgPool2d, adaptiveAvgPool2d
    // Normalisation.
    case batchNorm, layerNorm, rmsNorm, groupNorm
    // Losses with a kernel of their own.
    case crossEntropy, nllLoss, ctcLoss
    // Special functions.
    case bSplineBases
    // The fused backend pattern of Conv2d → BatchNorm2d → ReLU → MaxPool2d blocks.
    case convBatchNormReLUMaxPool
    // Composite ops: no node of their own; listed for their precision rule.
    case linear, bmm, einsum, mseLoss, binaryCrossEntropyWithLogits
}
