/// 2-D and 1-D convolution (cross-correlation, as in PyTorch) with backward.
///
/// Under `autocast`, float32 operands are converted to the autocast dtype. bfloat16
/// operands run on oneDNN's bfloat16 convolution (float32 accumulation, bfloat16 result and
/// gradients); float16 ones, and bfloat16 ones oneDNN refuses, are convolved in float32 and
/// the result is rounded to their dtype.
/// float32 runs on oneDNN when the library can take the configuration; everything else
/// (float64, and any configuration oneDNN refuses) runs on im2col + GEMM, or for depthwise
/// convolutions (`groups == Cin == Cout`) on a direct kernel; oneDNN's GEMM-based depthwise
/// kernels are refused for being slower than it. Gradients are
/// first-order only: the backward pass is not itself differentiable.
extension Tensor {
    /// `F.conv2d`: `input [N, Cin, H, W]`, `weight [Cout, Cin/groups, kH, kW]`,
    /// `bias [Cout]` or nil → `[N, Cout, Hout, Wout]` with
    /// `Hout = (H + 2·padH − dilH·(kH − 1) − 1) / strideH + 1` (likewise Wout).
    ///
    /// `stride`, `padding` and `dilation` take one value (both dimensions) or two (h, w),
    /// like PyTorch's int-or-tuple arguments. Padding is zero padding on both sides.
    /// `groups` splits the channels: `Cin` and `Cout` must both be divisible by it
    /// (`groups == Cin == Cout` is a depthwise convolution).
    public static func conv2d(_ input: Tensor, weight: Tensor, bias: Tensor?, stride: [Int] = [1],
                              padding: [Int] = [0], dilation: [Int] = [1], groups: Int = 1) throws -> Tensor {
        try Dispatch.run(.conv2d, [input, weight, bias]) { operands in
            try conv2dOperands(operands[0]!, weight: operands[1]!, bias: operands[2], stride: stride, padding: padding,
                               dilation: dilation, groups: groups)
        }
    }

    private static func conv2dOperands(_ input: Tensor, weight: Tensor, bias: Tensor?, stride: [Int], padding: [Int],
                                       dilation: [Int], groups: Int) throws -> Tensor {
        let op = Op.conv2d
        try checkConvOperands(op.rawValue, input, weight, bias, rank: 4, layout: "[N, C, H, W]", weightLayout: "[Cout, Cin/groups, kH, kW]")
        let s = try convPair(stride, "stride", op.rawValue, minimum: 1)
        let p = try convPair(padding, "padding", op.rawValue, minimum: 0)
        let d = try convPair(dilation, "dilation", op.rawValue, minimum: 1)
        let geo = ConvGeometry(batch: input.shape[0], inChannels: input.shape[1], height: input.shape[2], width: input.shape[3],
                               outChannels: weight.shape[0], groups: groups, kernelH: weight.shape[2], kernelW: weight.shape[3],
                               strideH: s.0, strideW: s.1, padH: p.0, padW: p.1, dilationH: d.0, dilationW: d.1)
        try checkConvGeometry(op.rawValue, geo, input: input.shape, weight: weight.shape, bias: bias?.shape)
        return convolve(op, geo, input, weight, bias)
    }

    /// `F.conv1d`: `input [N, Cin, L]`, `weight [Cout, Cin/groups, K]`, `bias [Cout]` or nil
    /// → `[N, Cout, Lout]` with `Lout = (L + 2·padding − dilation·(K − 1) − 1) / stride + 1`.
    ///
    /// A causal depthwise convolution (Mamba) is `conv1d(x, weight: w [C, 1, K], bias: b,
    /// padding: K - 1, groups: C).slice(axis: 2, start: 0, end: L)`.
    public static func conv1d(_ input: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0,
                              dilation: Int = 1, groups: Int = 1) throws -> Tensor {
        try Dispatch.run(.conv1d, [input, weight, bias]) { operands in
            try conv1dOperands(operands[0]!, weight: operands[1]!, bias: operands[2], stride: stride, padding: padding,
                               dilation: dilation, groups: groups)
        }
    }

    private static func conv1dOperands(_ input: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int,
                                       dilation: Int, groups: Int) throws -> Tensor {
        let op = Op.conv1d
        try checkConvOperands(op.rawValue, input, weight, bias, rank: 3, layout: "[N, C, L]", weightLayout: "[Cout, Cin/groups, K]")
        let s = try convPair([stride], "stride", op.rawValue, minimum: 1)
        let p = try convPair([padding], "padding", op.rawValue, minimum: 0)
        let d = try convPair([dilation], "dilation", op.rawValue, minimum: 1)
        let geo = ConvGeometry(batch: input.shape[0], inChannels: input.shape[1], height: 1, width: input.shape[2],
                               outChannels: weight.shape[0], groups: groups, kernelH: 1, kernelW: weight.shape[2],
                               strideH: 1, strideW: s.1, padH: 0, padW: p.1, dilationH: 1, dilationW: d.1)
        try checkConvGeometry(op.rawValue, geo, input: input.shape, weight: weight.shape, bias: bias?.shape)
        let x4 = try input.unsqueeze(2), w4 = try weight.unsqueeze(2)
        return try convolve(op, geo, x4, w4, bias).squeeze(2)
    }

    // MARK: - Validation

    private static func checkConvOperands(_ op: String, _ input: Tensor, _ weight: Tensor, _ bias: Tensor?,
                                          rank: Int, layout: String, weightLayout: String) throws {
        if input.dtype != .bfloat16 { try Kernels.requireFloat(input, op) }
        guard weight.dtype == input.dtype, bias.map({ $0.dtype == input.dtype }) ?? true else {
            throw TensorError.dtypeMismatch(op: op, message: "input is \(input.dtype), weight \(weight.dtype)"
                                            + (bias.map { ", bias \($0.dtype)" } ?? "") + "; all must match")
        }
        guard input.rank == rank else {
            throw TensorError.shapeMismatch(op: op, message: "input must be \(layout), got \(input.shape) (weight \(weight.shape))")
        }
        guard weight.rank == rank else {
            throw TensorError.shapeMismatch(op: op, message: "weight must be \(weightLayout), got \(weight.shape) (input \(input.shape))")
        }
    }

    /// One value (both dimensions) or two (h, w).
    static func convPair(_ values: [Int], _ name: String, _ op: String, minimum: Int) throws -> (Int, Int) {
        guard values.count == 1 || values.count == 2 else {
            throw TensorError.invalidArgument(op: op, message: "\(name) takes 1 or 2 values, got \(values)")
        }
        guard values.allSatisfy({ $0 >= minimum }) else {
            throw TensorError.invalidArgument(op: op, message: "\(name) must be at least \(minimum), got \(values)")
        }
        return (values[0], values[values.count - 1])
    }

    static func checkConvGeometry(_ op: String, _ geo: ConvGeometry, input: [Int], weight: [Int], bias: [Int]?) throws {
        let shapes = "input \(input), weight \(weight)"
        guard geo.groups >= 1 else {
            throw TensorError.invalidArgument(op: op, message: "groups must be at least 1, got \(geo.groups)")
        }
        guard geo.inChannels % geo.groups == 0, geo.outChannels % geo.groups == 0 else {
            throw TensorError.shapeMismatch(op: op, message: "\(shapes): input channels \(geo.inChannels) and output channels \(geo.outChannels) must both be divisible by groups \(geo.groups)")
        }
        guard weight[1] == geo.inChannels / geo.groups else {
            throw TensorError.shapeMismatch(op: op, message: "\(shapes): weight dimension 1 must be input channels / groups = \(geo.inChannels / geo.groups)")
        }
        guard geo.kernelH >= 1, geo.kernelW >= 1, geo.outChannels >= 1 else {
            throw TensorError.shapeMismatch(op: op, message: "\(shapes): weight has an empty dimension")
        }
        if let bias, bias != [geo.outChannels] {
            throw TensorError.shapeMismatch(op: op, message: "bias \(bias) for weight \(weight): expected [\(geo.outChannels)]")
        }
        let spanH = geo.dilationH * (geo.kernelH - 1) + 1, spanW = geo.dilationW * (geo.kernelW - 1) + 1
        guard spanH <= geo.height + 2 * geo.padH, spanW <= geo.width + 2 * geo.padW else {
            let kernel = op == "conv1d" ? "\(spanW)" : "\(spanH)×\(spanW)"
            let padded = op == "conv1d" ? "\(geo.width + 2 * geo.padW)" : "\(geo.height + 2 * geo.padH)×\(geo.width + 2 * geo.padW)"
            throw TensorError.shapeMismatch(op: op, message: "\(shapes): the dilated kernel (\(kernel)) is larger than the padded input (\(padded))")
        }
    }

    // MARK: - Forward and backward

    private static func convolve(_ op: Op, _ geo: ConvGeometry, _ input: Tensor, _ weight: Tensor, _ bias: Tensor?) -> Tensor {
        let x = input.contiguousStorage().detach(), w = weight.contiguousStorage().detach()
        let b = bias?.contiguousStorage().detach()
        let needs = ConvState.Needs(input: input.requiresGrad, weight: weight.requiresGrad, bias: bias?.requiresGrad ?? false)
        let keep = GradMode.isEnabled && (needs.input || needs.weight || needs.bias)
        let ran = Backends.first(for: op, dtype: input.dtype) { $0.convolution(geo, input: x, weight: w, bias: b, keep: keep) }
        guard let (out, backward) = ran else {
            // bfloat16 that no backend runs: float32 on the exactly widened operands, rounded back.
            return convolve(op, geo, input.to(.float32), weight.to(.float32), bias?.to(.float32)).to(input.dtype)
        }
        let inputs = bias.map { [input, weight, $0] } ?? [input, weight]
        guard let backward else { return out }
        return Dispatch.record(op, out, inputs: inputs,
                               state: ConvState(backward: backward, needs: needs, hasBias: bias != nil, dtype: out.dtype))
    }
}

/// What a convolution keeps for its gradient: the backend's backward pass.
struct ConvState: @unchecked Sendable {
    struct Needs { let input: Bool, weight: Bool, bias: Bool }
    let backward: any ConvBackward
    let needs: Needs
    let hasBias: Bool
    /// The output's dtype (the gradient is converted to it).
    let dtype: DType
}
