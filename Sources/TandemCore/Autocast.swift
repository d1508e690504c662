/// Automatic mixed precision (`torch.autocast` for the CPU).
///
/// Inside `autocast(dtype:)`, the ops on PyTorch's CPU *lower-precision* list (matmul, bmm,
/// linear, einsum, conv1d, conv2d) convert their float32 operands to the low dtype and
/// return a tensor of the low dtype. Every other op keeps its float32 behaviour; an op that
/// is handed a float16/bfloat16 tensor (the output of a low-precision op) widens it:
/// elementwise ops and activations compute in float32 and round their result back to the
/// low dtype (as in PyTorch), while reductions, softmax, log-softmax, losses, pooling and
/// normalisation compute and return float32 (PyTorch's *fp32* list).
///
/// Parameters are never converted in place: the casts are recorded in the graph, so the
/// gradients of float32 parameters arrive in float32.
///
/// Compute: bfloat16 matmul and convolution run on oneDNN's bfloat16 primitives where the CPU
/// has them (float32 accumulation, bfloat16 results and gradients; Debian's OpenBLAS exports no
/// `cblas_sbgemm`). Elsewhere, for float16 and for any shape oneDNN refuses, the products compute
/// in float32 on the rounded operands and round the result: PyTorch's numerics.
public enum Autocast {
    /// The low dtype of the innermost enclosing `autocast`, or nil when autocast is off.
    @TaskLocal public static var dtype: DType?

    /// The dtype to cast float32 operands of a lower-precision op to, or nil to leave them.
    static func castTarget(_ operands: Tensor?...) -> DType? {
        guard let low = dtype else { return nil }
        return operands.contains { $0 != nil && $0!.dtype == .float32 } ? low : nil
    }

    /// Runs `body` with autocast off (used by ops that call themselves on widened operands).
    static func off<R>(_ body: () throws -> R) rethrows -> R {
        try $dtype.withValue(nil, operation: body)
    }
}

/// Runs `body` under automatic mixed precision (`torch.autocast("cpu", dtype:, enabled:)`).
///
/// - Parameters:
///   - dtype: `.bfloat16` (PyTorch's CPU default) or `.float16`.
///   - enabled: false turns autocast off inside `body` (also inside an outer autocast).
///
/// Nested calls override the outer one for their body. The state is task-local (like
/// `Tensor.withNoGrad`), so it does not leak into other tasks or threads. The backward pass
/// never runs under autocast: its ops use the dtypes recorded in the forward pass.
/// Traps if `dtype` is not float16 or bfloat16 (a programmer error).
public func autocast<R>(dtype: DType = .bfloat16, enabled: Bool = true, _ body: () throws -> R) rethrows -> R {
    precondition(dtype.isLowPrecision, "autocast: dtype must be .bfloat16 or .float16, got \(dtype)")
    return try Autocast.$dtype.withValue(enabled ? dtype : nil, operation: body)
}

extension DType {
    /// True for the 16-bit float types (float16, bfloat16), which store but do not compute.
    public var isLowPrecision: Bool { self == .float16 || self == .bfloat16 }
}

extension Tensor {
    /// This tensor as float32 if it is float16/bfloat16 (differentiable); otherwise itself.
    func widened() -> Tensor { dtype.isLowPrecision ? to(.float32) : self }
}
