import TandemNN

/// Gradient clipping (`torch.nn.utils.clip_grad_norm_`).
public enum ClipGrad {
    /// Scales all gradients in place so that their global L2 norm is at most `maxNorm`
    /// (factor `maxNorm / (norm + 1e-6)`, applied only when below 1). Returns the norm before
    /// clipping. Throws if the norm is not finite and `errorIfNonfinite`.
    @discardableResult
    public static func clipGradNorm(_ parameters: [Parameter], maxNorm: Double, errorIfNonfinite: Bool = false) throws -> Double {
        var squares = 0.0
        for p in parameters {
            guard let g = p.grad else { continue }
            squares += g.squaredNorm()
        }
        let norm = squares.squareRoot()
        if !norm.isFinite && errorIfNonfinite {
            throw TensorError.invalidArgument(op: "clipGradNorm", message: "the total gradient norm is \(norm); pass errorIfNonfinite: false to clip anyway")
        }
        let factor = maxNorm / (norm + 1e-6)
        if factor < 1 {
            for p in parameters {
                guard let g = p.grad else { continue }
                try p.value.setGrad(try Tensor.withNoGrad { try g * factor })
            }
        }
        return norm
    }
}
