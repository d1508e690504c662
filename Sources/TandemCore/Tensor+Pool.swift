/// 2-D pooling over `[N, C, H, W]` (or `[C, H, W]`) with backward. Floor mode only
/// (`ceil_mode=False`), no dilation.
extension Tensor {
    /// `F.max_pool2d`: `[N, C, H, W]` → `[N, C, Hout, Wout]`, `Hout = (H + 2·padH − kH) / strideH + 1`.
    ///
    /// `kernelSize`, `stride` (default: the kernel size) and `padding` take one value (both
    /// dimensions) or two (h, w). Padding counts as −∞ and may be at most half the kernel.
    /// The gradient goes to the first maximum of each window (row-major order), as in PyTorch;
    /// a NaN in a window is its maximum.
    public func maxPool2d(kernelSize: [Int], stride: [Int]? = nil, padding: [Int] = [0]) throws -> Tensor {
        try Dispatch.run(.maxPool2d, self) { input in
            let (x, geo, outShape) = try input.poolSetup("maxPool2d", kernelSize: kernelSize, stride: stride, padding: padding)
            let (out, indices) = Kernels.maxPool2dForward(geo, input: x)
            return Dispatch.record(.maxPool2d, try out.reshape(outShape), inputs: [input],
                                   state: PoolState.max(geo, indices: indices, inputShape: input.shape))
        }
    }

    /// `F.avg_pool2d`: `[N, C, H, W]` → `[N, C, Hout, Wout]`, `Hout = (H + 2·padH − kH) / strideH + 1`.
    ///
    /// Zero padding. With `countIncludePad` each window is divided by its size clipped to the
    /// padded input; without it, by the number of real input elements it covers.
    public func avgPool2d(kernelSize: [Int], stride: [Int]? = nil, padding: [Int] = [0],
                          countIncludePad: Bool = true) throws -> Tensor {
        try Dispatch.run(.avgPool2d, self) { input in
            let (x, geo, outShape) = try input.poolSetup("avgPool2d", kernelSize: kernelSize, stride: stride, padding: padding)
            let out = Kernels.avgPool2dForward(geo, input: x, countIncludePad: countIncludePad)
            return Dispatch.record(.avgPool2d, try out.reshape(outShape), inputs: [input],
                                   state: PoolState.average(geo, countIncludePad: countIncludePad, inputShape: input.shape))
        }
    }

    /// `F.adaptive_avg_pool2d`: `[N, C, H, W]` → `[N, C, outH, outW]`; `outputSize` takes one
    /// value (square) or two. Output row `i` averages input rows
    /// `floor(i·H/outH) ..< ceil((i+1)·H/outH)` (likewise columns), so windows may overlap.
    public func adaptiveAvgPool2d(outputSize: [Int]) throws -> Tensor {
        try Dispatch.run(.adaptiveAvgPool2d, self) { try $0.adaptiveAveragePool(outputSize: outputSize) }
    }

    private func adaptiveAveragePool(outputSize: [Int]) throws -> Tensor {
        let op = "adaptiveAvgPool2d"
        try Kernels.requireFloat(self, op)
        guard rank == 3 || rank == 4 else {
            throw TensorError.shapeMismatch(op: op, message: "input must be [N, C, H, W] or [C, H, W], got \(shape)")
        }
        guard outputSize.count == 1 || outputSize.count == 2, outputSize.allSatisfy({ $0 >= 1 }) else {
            throw TensorError.invalidArgument(op: op, message: "outputSize takes 1 or 2 positive values, got \(outputSize)")
        }
        let (h, w) = (shape[rank - 2], shape[rank - 1])
        guard h >= 1, w >= 1 else {
            throw TensorError.shapeMismatch(op: op, message: "input \(shape) has an empty spatial dimension")
        }
        let (oh, ow) = (outputSize[0], outputSize[outputSize.count - 1])
        let planes = shape.dropLast(2).reduce(1, *)
        let x = contiguousStorage()
        let out = Kernels.adaptiveAvgPool2dForward(input: x, planes: planes, height: h, width: w, outHeight: oh, outWidth: ow)
        return Dispatch.record(.adaptiveAvgPool2d, try out.reshape(Array(shape.dropLast(2)) + [oh, ow]), inputs: [self],
                               state: PoolState.adaptiveAverage(planes: planes, height: h, width: w, outHeight: oh, outWidth: ow,
                                                                inputShape: shape))
    }

    /// Validates a pooling call and returns the contiguous input, the geometry and the output shape.
    private func poolSetup(_ op: String, kernelSize: [Int], stride: [Int]?, padding: [Int]) throws
        -> (Tensor, PoolGeometry, [Int]) {
        try Kernels.requireFloat(self, op)
        guard rank == 3 || rank == 4 else {
            throw TensorError.shapeMismatch(op: op, message: "input must be [N, C, H, W] or [C, H, W], got \(shape)")
        }
        func pair(_ values: [Int], _ name: String, minimum: Int) throws -> (Int, Int) {
            guard values.count == 1 || values.count == 2, values.allSatisfy({ $0 >= minimum }) else {
                throw TensorError.invalidArgument(op: op, message: "\(name) takes 1 or 2 values of at least \(minimum), got \(values)")
            }
            return (values[0], values[values.count - 1])
        }
        let k = try pair(kernelSize, "kernelSize", minimum: 1)
        let s = try pair(stride ?? kernelSize, "stride", minimum: 1)
        let p = try pair(padding, "padding", minimum: 0)
        guard p.0 <= k.0 / 2, p.1 <= k.1 / 2 else {
            throw TensorError.invalidArgument(op: op, message: "padding \(padding) must be at most half the kernel size \(kernelSize)")
        }
        let (h, w) = (shape[rank - 2], shape[rank - 1])
        guard h + 2 * p.0 >= k.0, w + 2 * p.1 >= k.1 else {
            throw TensorError.shapeMismatch(op: op, message: "input \(shape): kernel \(kernelSize) is larger than the padded input (\(h + 2 * p.0)×\(w + 2 * p.1))")
        }
        let planes = shape.dropLast(2).reduce(1, *)
        let geo = PoolGeometry(planes: planes, height: h, width: w, kernelH: k.0, kernelW: k.1,
                               strideH: s.0, strideW: s.1, padH: p.0, padW: p.1)
        guard h * w <= Int(Int32.max) else {
            throw TensorError.invalidArgument(op: op, message: "planes of \(h)×\(w) elements are too large (at most 2^31 − 1)")
        }
        return (contiguousStorage(), geo, Array(shape.dropLast(2)) + [geo.outHeight, geo.outWidth])
    }
}

/// What a pooling keeps for its gradient.
enum PoolState: @unchecked Sendable {
    case max(PoolGeometry, indices: Tensor, inputShape: [Int])
    case average(PoolGeometry, countIncludePad: Bool, inputShape: [Int])
    case adaptiveAverage(planes: Int, height: Int, width: Int, outHeight: Int, outWidth: Int, inputShape: [Int])
}
