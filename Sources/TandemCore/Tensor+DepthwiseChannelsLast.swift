/// Depthwise convolution on channels-last tensors (MambaOut's token mixer).
extension Tensor {
    /// Depthwise convolution with stride 1 of a channels-last tensor: `input [N, H, W, C]`,
    /// `weight [C, 1, kH, kW]` (a depthwise `Conv2d`'s weight), `bias [C]` or nil, zero `padding`
    /// (one value for both dimensions, or two) → `[N, H + 2·padH − kH + 1, W + 2·padW − kW + 1, C]`.
    ///
    /// Equal to `conv2d(input.permute([0, 3, 1, 2]), weight, bias, padding, groups: C)
    /// .permute([0, 2, 3, 1])`, without the two layout copies, on a kernel that vectorises over
    /// the channels (`Kernels.depthwiseChannelsLastForward`). float32 and float64 outside
    /// autocast; other dtypes and autocast run the `conv2d` form. Wrong shapes throw
    /// `TensorError.shapeMismatch`, negative padding `TensorError.invalidArgument`.
    public static func depthwiseConv2dChannelsLast(_ input: Tensor, weight: Tensor, bias: Tensor?, padding: [Int]) throws -> Tensor {
        try Dispatch.run(.depthwiseConv2dChannelsLast, [input, weight, bias]) { operands in
            try depthwiseChannelsLast(operands[0]!, weight: operands[1]!, bias: operands[2], padding: padding)
        }
    }

    private static func depthwiseChannelsLast(_ input: Tensor, weight: Tensor, bias: Tensor?, padding: [Int]) throws -> Tensor {
        let op = "depthwiseConv2dChannelsLast"
        let (padH, padW) = try convPair(padding, "padding", op, minimum: 0)
        guard input.rank == 4 else {
            throw TensorError.shapeMismatch(op: op, message: "input must be channels-last [N, H, W, C], got \(input.shape)")
        }
        let channels = input.shape[3]
        guard channels > 0 else {
            throw TensorError.shapeMismatch(op: op, message: "input \(input.shape) has no channels")
        }
        guard weight.rank == 4, weight.shape[0] == channels else {
            throw TensorError.shapeMismatch(op: op, message: "weight \(weight.shape) for input \(input.shape): expected [\(channels), 1, kH, kW]")
        }
        let geo = ConvGeometry(batch: input.shape[0], inChannels: channels, height: input.shape[1], width: input.shape[2],
                               outChannels: channels, groups: channels, kernelH: weight.shape[2], kernelW: weight.shape[3],
                               strideH: 1, strideW: 1, padH: padH, padW: padW, dilationH: 1, dilationW: 1)
        // Depthwise (weight dimension 1 is 1), bias, empty kernel, kernel larger than the padded input.
        try checkConvGeometry(op, geo, input: input.shape, weight: weight.shape, bias: bias?.shape)
        let operands = [input, weight] + (bias.map { [$0] } ?? [])
        guard operands.allSatisfy({ $0.dtype == input.dtype }), input.dtype.isComputeType else {
            return try conv2d(input.permute([0, 3, 1, 2]), weight: weight, bias: bias, padding: [padH, padW], groups: channels)
                .permute([0, 2, 3, 1])
        }
        let x = input.contiguousStorage().detach(), w = weight.contiguousStorage().detach()
        let out = Kernels.depthwiseChannelsLastForward(geo, input: x, weight: w, bias: bias?.contiguousStorage().detach())
        let state = DepthwiseChannelsLastState(geo: geo, input: x, weight: w, hasBias: bias != nil,
                                               needs: operands.map(\.requiresGrad))
        return Dispatch.record(.depthwiseConv2dChannelsLast, out, inputs: operands, state: state)
    }
}

/// What a channels-last depthwise convolution keeps for its gradient.
struct DepthwiseChannelsLastState: @unchecked Sendable {
    let geo: ConvGeometry
    /// The contiguous input `[N, H, W, C]` and weight.
    let input: Tensor, weight: Tensor
    let hasBias: Bool
    /// Whether input, weight (and bias) need gradients.
    let needs: [Bool]
}
