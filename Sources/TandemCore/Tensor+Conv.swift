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
        let op = "conv2d"
        if let low = Autocast.castTarget(input, weight, bias) {
            return try conv2d(input.to(low), weight: weight.to(low), bias: bias?.to(low), stride: stride, padding: padding,
                           dilation: dilation, groups: groups)
        }
        if input.dtype == .float16, weight.dtype == input.dtype, bias.map({ $0.dtype == input.dtype }) ?? true {
            return try Autocast.off {
                try conv2d(input.to(.float32), weight: weight.to(.float32), bias: bias?.to(.float32), stride: stride,
                                          padding: padding, dilation: dilation, groups: groups)
            }.to(input.dtype)
        }
        try checkConvOperands(op, input, weight, bias, rank: 4, layout: "[N, C, H, W]", weightLayout: "[Cout, Cin/groups, kH, kW]")
        let s = try convPair(stride, "stride", op, minimum: 1)
        let p = try convPair(padding, "padding", op, minimum: 0)
        let d = try convPair(dilation, "dilation", op, minimum: 1)
        let geo = ConvGeometry(batch: input.shape[0], inChannels: input.shape[1], height: input.shape[2], width: input.shape[3],
                               outChannels: weight.shape[0], groups: groups, kernelH: weight.shape[2], kernelW: weight.shape[3],
                               strideH: s.0, strideW: s.1, padH: p.0, padW: p.1, dilationH: d.0, dilationW: d.1)
        try checkConvGeometry(op, geo, input: input.shape, weight: weight.shape, bias: bias?.shape)
        return convolve(op, geo, input, weight, bias)
    }

    /// `F.conv1d`: `input [N, Cin, L]`, `weight [Cout, Cin/groups, K]`, `bias [Cout]` or nil
    /// → `[N, Cout, Lout]` with `Lout = (L + 2·padding − dilation·(K − 1) − 1) / stride + 1`.
    ///
    /// A causal depthwise convolution (Mamba) is `conv1d(x, weight: w [C, 1, K], bias: b,
    /// padding: K - 1, groups: C).slice(axis: 2, start: 0, end: L)`.
    public static func conv1d(_ input: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0,
                              dilation: Int = 1, groups: Int = 1) throws -> Tensor {
        let op = "conv1d"
        if let low = Autocast.castTarget(input, weight, bias) {
            return try conv1d(input.to(low), weight: weight.to(low), bias: bias?.to(low), stride: stride, padding: padding,
                           dilation: dilation, groups: groups)
        }
        if input.dtype == .float16, weight.dtype == input.dtype, bias.map({ $0.dtype == input.dtype }) ?? true {
            return try Autocast.off {
                try conv1d(input.to(.float32), weight: weight.to(.float32), bias: bias?.to(.float32), stride: stride,
                                          padding: padding, dilation: dilation, groups: groups)
            }.to(input.dtype)
        }
        try checkConvOperands(op, input, weight, bias, rank: 3, layout: "[N, C, L]", weightLayout: "[Cout, Cin/groups, K]")
        let s = try convPair([stride], "stride", op, minimum: 1)
        let p = try convPair([padding], "padding", op, minimum: 0)
        let d = try convPair([dilation], "dilation", op, minimum: 1)
        let geo = ConvGeometry(batch: input.shape[0], inChannels: input.shape[1], height: 1, width: input.shape[2],
                               outChannels: weight.shape[0], groups: groups, kernelH: 1, kernelW: weight.shape[2],
                               strideH: 1, strideW: s.1, padH: 0, padW: p.1, dilationH: 1, dilationW: d.1)
        try checkConvGeometry(op, geo, input: input.shape, weight: weight.shape, bias: bias?.shape)
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

    private static func convolve(_ op: String, _ geo: ConvGeometry, _ input: Tensor, _ weight: Tensor, _ bias: Tensor?) -> Tensor {
        let x = input.contiguousStorage().detach(), w = weight.contiguousStorage().detach()
        let b = bias?.contiguousStorage().detach()
        let needInput = input.requiresGrad, needWeight = weight.requiresGrad, needBias = bias?.requiresGrad ?? false
        let recording = GradMode.isEnabled && (needInput || needWeight || needBias)
        let out: Tensor
        var saved: DNNLConvSaved?
        if let fast = Kernels.convForwardDNNL(geo, input: x, weight: w, bias: b, keep: recording) {
            (out, saved) = fast
        } else if input.dtype == .bfloat16 {
            // oneDNN refused: float32 on the exactly widened operands, rounded back.
            return convolve(op, geo, input.to(.float32), weight.to(.float32), bias?.to(.float32)).to(.bfloat16)
        } else {
            out = Kernels.convForwardPortable(geo, input: x, weight: w, bias: b)
        }
        let inputs = bias.map { [input, weight, $0] } ?? [input, weight]
        let hasBias = bias != nil
        return record(op, out, inputs: inputs) { g in
            let gy = (g.dtype == out.dtype ? g : g.to(out.dtype)).contiguousStorage()
            let grads = saved.map {
                Kernels.convBackwardDNNL($0, input: x, weight: w, gradOut: gy, needInput: needInput,
                                         needWeight: needWeight, needBias: needBias)
            } ?? Kernels.convBackwardPortable(geo, input: x, weight: w, gradOut: gy, needInput: needInput,
                                            needWeight: needWeight, needBias: needBias)
            return hasBias ? [grads.input, grads.weight, grads.bias] : [grads.input, grads.weight]
        }
    }
}
