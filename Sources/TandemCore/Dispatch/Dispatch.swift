/// The one way every op takes through the core:
///
/// 1. `run` applies the op's precision rule (`AutocastPolicy`): autocast's casts and the
///    float32 compute of float16/bfloat16 operands;
/// 2. the op's forward pass runs on the first backend of `Backends.candidates` that takes it
///    (`Backends.first`);
/// 3. `record` attaches the graph node, whose backward pass is the op's rule in `Derivatives`
///    applied to what the rule keeps (`Saved`).
///
/// Op files hold the op's contract (validation, shapes) and call these three; no op records
/// a gradient closure or consults autocast itself.
enum Dispatch {
    /// Runs `body` on `operands` converted as `op`'s precision rule asks, and converts the
    /// result back where the rule says so. nil operands (an absent bias) stay nil.
    static func run(_ op: Op, _ operands: [Tensor?], _ body: ([Tensor?]) throws -> Tensor) throws -> Tensor {
        let floating = operands.compactMap { $0 }.filter { $0.dtype.isFloatingPoint }
        let low = floating.first { $0.dtype.isLowPrecision }?.dtype
        switch AutocastPolicy.rule(for: op) {
        case .passThrough:
            return try body(operands)
        case .lowerPrecision:
            if let target = Autocast.dtype, floating.contains(where: { $0.dtype == .float32 }) {
                return try run(op, operands.map { $0.map { $0.dtype == .float32 ? $0.to(target) : $0 } }, body)
            }
            guard floating.allSatisfy({ $0.dtype == .float16 }), !floating.isEmpty else { return try body(operands) }
            return try Autocast.off { try body(operands.map { $0?.widened() }) }.to(.float16)
        case .float32:
            guard low != nil else { return try body(operands) }
            return try body(operands.map { $0?.widened() })
        case .keepDType:
            guard let low else { return try body(operands) }
            let wide = try body(operands.map { $0?.widened() })
            return floating.allSatisfy({ $0.dtype == low }) ? wide.to(low) : wide
        }
    }

    /// Runs a backward pass: no graph is recorded, and the rules' ops use the dtypes recorded in
    /// the forward pass, never autocast's.
    static func backwardPass<R>(_ body: () throws -> R) rethrows -> R {
        try Tensor.withNoGrad { try Autocast.off(body) }
    }

    /// `run` for a single operand.
    static func run(_ op: Op, _ operand: Tensor, _ body: (Tensor) throws -> Tensor) throws -> Tensor {
        try run(op, [operand]) { try body($0[0]!) }
    }

    /// Attaches `op`'s graph node to `output` when grad mode is on and an input requires a
    /// gradient. The node's backward pass is `Derivatives.backward(op, …)` on what the rule
    /// keeps (`Derivatives.keeps(op)`) and the attributes given here.
    static func record(_ op: Op, _ output: Tensor, inputs: [Tensor], axes: [Int] = [], ints: [Int] = [],
                       shape: [Int] = [], scalars: [Double] = [], tensors: [Tensor] = [],
                       state: (any Sendable)? = nil) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: { $0.gradNode != nil }) else { return output }
        let keeps = Derivatives.keeps(op)
        let saved = Saved(inputs: keeps.contains(.inputs) ? inputs.map { $0.detach() } : [],
                          shapes: inputs.map(\.shape), dtypes: inputs.map(\.dtype), needs: inputs.map(\.requiresGrad),
                          output: keeps.contains(.output) ? output.detach() : nil, outputDType: output.dtype,
                          axes: axes, ints: ints, shape: shape, scalars: scalars, tensors: tensors, state: state)
        return output.withGradNode(GradNode(name: op.rawValue, inputs: inputs.map(\.gradNode)) { g in
            try Derivatives.backward(op, g, saved)
        })
    }
}
