/// The gradient rule of every primitive op, in one table (PyTorch's `derivatives.yaml`).
///
/// A rule maps dL/d(output) `g` and what the forward pass kept (`Saved`) to one gradient per
/// input, shaped like that input (nil where the input needs none). Rules are written in tensor
/// ops where that is cheap; where a backend has a native backward kernel (convolution, pooling,
/// normalisation, the class losses, the fused conv blocks, f'(x) of elementwise functions), the
/// rule calls it with the state the forward pass left (`Saved.state`). Gradients are first
/// order: the backward pass runs without recording (`Dispatch.backwardPass`).
/// Composite ops have no rule: their gradient comes from the primitives they are made of.
enum Derivatives {
    /// What the rule of `op` reads besides its attributes (the rest is not kept alive).
    static func keeps(_ op: Op) -> Keep {
        switch op {
        case .mul, .maximum, .minimum, .matmul, .amax, .amin, .cumprod:
            return .inputs
        case .div, .pow:
            return [.inputs, .output]
        case .softmax, .logSoftmax, .exp, .sqrt, .rsqrt, .sigmoid, .tanh, .expm1:
            return .output
        case .log, .abs, .log1p, .clamp, .powScalar, .relu, .silu, .gelu, .geluTanh, .softplus:
            return .inputs
        default:
            return .nothing
        }
    }

    /// The gradients of `op`'s inputs.
    static func backward(_ op: Op, _ g: Tensor, _ s: Saved) throws -> [Tensor?] {
        switch op {
        // MARK: Elementwise, two operands
        case .add:
            return [s.needs[0] ? try g.sumTo(s.shapes[0]) : nil, s.needs[1] ? try g.sumTo(s.shapes[1]) : nil]
        case .sub:
            return [s.needs[0] ? try g.sumTo(s.shapes[0]) : nil, s.needs[1] ? try (-g).sumTo(s.shapes[1]) : nil]
        case .mul:
            let (a, b) = (s.input(0), s.input(1))
            return [s.needs[0] ? try (g * b).sumTo(a.shape) : nil, s.needs[1] ? try (g * a).sumTo(b.shape) : nil]
        case .div:
            let gb = try g / s.input(1)
            return [s.needs[0] ? try gb.sumTo(s.shapes[0]) : nil, s.needs[1] ? try (-(gb * s.out)).sumTo(s.shapes[1]) : nil]
        case .pow:
            let (a, b) = (s.input(0), s.input(1))
            return [s.needs[0] ? try (g * b * Tensor.pow(a, b - 1)).sumTo(a.shape) : nil,
                    s.needs[1] ? try (g * s.out * a.log()).sumTo(b.shape) : nil]
        case .maximum, .minimum:
            // Ties split the gradient equally.
            let (a, b) = (s.input(0), s.input(1))
            let share = op == .maximum ? try Tensor.greaterShare(a, b) : try Tensor.greaterShare(b, a)
            return [s.needs[0] ? try (g * share).sumTo(a.shape) : nil, s.needs[1] ? try (g * (1 - share)).sumTo(b.shape) : nil]
        case .where:
            let mask = s.tensors[0], zero = Tensor.zeros([], dtype: s.dtypes[0])
            return [s.needs[0] ? try Tensor.where(mask, g, zero).sumTo(s.shapes[0]) : nil,
                    s.needs[1] ? try Tensor.where(mask, zero, g).sumTo(s.shapes[1]) : nil]

        // MARK: Elementwise, one operand (f'(x) from the kernel's UnaryFunction)
        case .neg, .exp, .log, .sqrt, .rsqrt, .abs, .sign, .log1p, .expm1, .clamp, .powScalar,
             .relu, .sigmoid, .tanh, .silu, .gelu, .geluTanh, .softplus:
            return [try unaryBackward(op, g, s)]

        // MARK: Reductions and scans
        case .sum:
            return [try g.reshape(s.shape).expand(s.shapes[0])]
        case .amax, .amin:
            // Every element equal to the extremum shares the gradient.
            let input = s.input(0), kept = s.tensors[0]
            let winners = try input.eq(kept.expand(input.shape)).to(input.dtype)
            let ties = try winners.sum(axes: s.axes, keepDim: true)
            return [try winners * (g.reshape(kept.shape) / ties)]
        case .max, .min:
            // The gradient goes to the first extremum (its index).
            return [try Tensor.zeros(s.shapes[0], dtype: s.dtypes[0])
                .scatterAdd(axis: s.axes[0], index: s.tensors[0], source: g.reshape(s.shape))]
        case .prod:
            // tensors[0]: the product of the other elements of each reduced row.
            let grad = try s.tensors[0] * g.reshape([-1, 1])
            return [try grad.reshape(s.shape).permute(s.ints).contiguous()]
        case .cumsum:
            return [try g.detach().scan(axis: s.axes[0], product: false, exclusive: false, reverse: true)]
        case .cumprod:
            return [try Kernels.cumprodBackward(input: s.input(0), gradOut: g, axis: s.axes[0])]

        // MARK: Views, layout and dtype
        case .reshape:
            return [try g.reshape(s.shapes[0])]
        case .permute:
            return [try g.permute(s.ints)]
        case .expand:
            return [try g.sumTo(s.shapes[0])]
        case .slice:
            return [try Tensor.scatterSlice(g, into: s.shapes[0], dtype: s.dtypes[0], axis: s.axes[0], start: s.ints[0], step: s.ints[1])]
        case .contiguous:
            return [g]
        case .to:
            return [g.to(s.dtypes[0])]
        case .pad:
            // ints: the padding before each axis.
            var cut = g
            for (axis, size) in s.shapes[0].enumerated() where s.ints[axis] != 0 || size != g.shape[axis] {
                cut = try cut.narrow(axis: axis, start: s.ints[axis], length: size)
            }
            return [cut]
        case .cat:
            let a = s.axes[0]
            return try zip(s.ints, s.shapes).map { start, shape in try g.narrow(axis: a, start: start, length: shape[a]) }

        // MARK: Indexing
        case .indexSelect:
            var indexShape = [Int](repeating: 1, count: s.shape.count)
            indexShape[s.axes[0]] = s.tensors[0].count
            let full = try s.tensors[0].reshape(indexShape).expand(s.shape)
            return [try Tensor.zeros(s.shapes[0], dtype: s.dtypes[0]).scatterAdd(axis: s.axes[0], index: full, source: g)]
        case .embedding:
            return [Kernels.embeddingBackward(try g.contiguousStorage().reshape([-1, s.shapes[0][1]]), s.ints, vocabulary: s.shapes[0][0])]
        case .gather:
            return [try Tensor.zeros(s.shapes[0], dtype: s.dtypes[0]).scatterAdd(axis: s.axes[0], index: s.tensors[0], source: g)]
        case .scatterAdd:
            return [g, try g.gather(axis: s.axes[0], index: s.tensors[0])]

        // MARK: Products and convolutions
        case .matmul:
            return try matmulBackward(g, s)
        case .conv1d, .conv2d:
            return try (s.state as! ConvState).backward(g)
        case .depthwiseConv2dChannelsLast:
            return try (s.state as! DepthwiseChannelsLastState).backward(g)
        case .scaledDotProductAttention:
            return try (s.state as! AttentionState).backward(g)
        case .rotaryEmbedding:
            let t = s.state as! RotaryTables
            return [Kernels.rotary(g.contiguousStorage(), cos: t.cos, sin: t.sin, length: t.length, inverse: true)]
        case .dropout:
            return [Kernels.seededDropout(g.contiguousStorage(), p: s.scalars[0], seed: UInt64(bitPattern: Int64(s.ints[0])))]

        // MARK: Softmax: dx = y · (g − Σ g·y); log-softmax: dx = g − softmax · Σ g
        case .softmax:
            let y = s.out, a = s.axes[0]
            if !GradMode.isEnabled, let dx = try Kernels.softmaxBackwardDNNL(g, out: y, axis: a) { return [dx] }
            let dot = try (g * y).sum(axes: [a], keepDim: true)
            return [try y * (g - dot)]
        case .logSoftmax:
            return [try Kernels.logSoftmaxBackward(g, out: s.out, probabilities: s.tensors.first, axis: s.axes[0])]

        // MARK: Pooling, normalisation, losses, special functions: native backward kernels
        case .maxPool2d, .avgPool2d, .adaptiveAvgPool2d:
            return [try (s.state as! PoolState).backward(g)]
        case .batchNorm:
            return try (s.state as! BatchNormState).backward(g)
        case .layerNorm, .rmsNorm, .groupNorm:
            return try (s.state as! RowNormState).backward(g)
        case .crossEntropy, .nllLoss:
            return [try (s.state as! ClassLossState).backward(g)]
        case .ctcLoss:
            return [try (s.state as! CTCState).backward(g)]
        case .bSplineBases:
            return [try (s.state as! BSplineState).backward(g)]
        case .convBatchNormReLUMaxPool:
            return try (s.state as! ConvBlocksState).backward(g)

        case .linear, .bmm, .einsum, .mseLoss, .binaryCrossEntropyWithLogits:
            throw TensorError.autograd("\(op.rawValue) is a composite op and records no node of its own")
        }
    }

    /// `g · f'(x)` for the elementwise functions; oneDNN's eltwise backward where the forward
    /// pass ran on it (its state is the algorithm).
    private static func unaryBackward(_ op: Op, _ g: Tensor, _ s: Saved) throws -> Tensor {
        if op == .neg { return try -g }
        if op == .sign { return Tensor.zeros(g.shape, dtype: s.dtypes[0]) }
        // f'(x, y) reads the input, the output or both; whichever was not kept is not read.
        let x = s.inputs.first ?? s.out, y = s.output ?? x
        if let algorithm = s.state as? DNNLEltwise.Algorithm, let dx = Kernels.eltwiseBackwardDNNL(algorithm, x: x, gradOut: g) {
            return dx
        }
        switch op {
        case .exp: return Kernels.mapBackward(g, x: x, y: y, ExpFn())
        case .log: return Kernels.mapBackward(g, x: x, y: y, LogFn())
        case .sqrt: return Kernels.mapBackward(g, x: x, y: y, SqrtFn())
        case .rsqrt: return Kernels.mapBackward(g, x: x, y: y, RsqrtFn())
        case .abs: return Kernels.mapBackward(g, x: x, y: y, AbsFn())
        case .log1p: return Kernels.mapBackward(g, x: x, y: y, Log1pFn())
        case .expm1: return Kernels.mapBackward(g, x: x, y: y, Expm1Fn())
        case .clamp: return Kernels.mapBackward(g, x: x, y: y, ClampFn(low: s.scalars[0], high: s.scalars[1]))
        case .powScalar: return Kernels.mapBackward(g, x: x, y: y, ScalarPowFn(exponent: s.scalars[0]))
        case .relu: return Kernels.mapBackward(g, x: x, y: y, ReluFn())
        case .sigmoid: return Kernels.mapBackward(g, x: x, y: y, SigmoidFn())
        case .tanh: return Kernels.mapBackward(g, x: x, y: y, TanhFn())
        case .silu: return Kernels.mapBackward(g, x: x, y: y, SiluFn())
        case .gelu: return Kernels.mapBackward(g, x: x, y: y, GeluErfFn())
        case .geluTanh: return Kernels.mapBackward(g, x: x, y: y, GeluTanhFn())
        case .softplus: return Kernels.mapBackward(g, x: x, y: y, SoftplusFn(beta: s.scalars[0], threshold: s.scalars[1]))
        default: throw TensorError.autograd("\(op.rawValue) is not an elementwise function")
        }
    }

    /// dA = g·Bᵀ, dB = Aᵀ·g, each summed over broadcast batch dimensions.
    private static func matmulBackward(_ g: Tensor, _ s: Saved) throws -> [Tensor?] {
        let (a, b) = (s.input(0), s.input(1))
        let g = g.dtype == s.outputDType ? g : g.to(s.outputDType)
        // When b is a transposed view (linear's weight.t()), dB is computed as (gᵀ·a)ᵀ, so that the
        // gradient reaching the untransposed tensor is contiguous, not a strided transpose.
        let bTransposed = b.rank == 2 && b.strides[1] != 1 && b.strides[0] == 1
        return [s.needs[0] ? try Tensor.batchedMatmul(g, b.transpose(-1, -2)).sumTo(a.shape) : nil,
                s.needs[1] ? try (bTransposed && a.rank == 2
                                  ? Tensor.batchedMatmul(g.transpose(-1, -2), a).transpose(-1, -2)
                                  : Tensor.batchedMatmul(a.transpose(-1, -2), g)).sumTo(b.shape) : nil]
    }
}
