import TandemNN

/// An optimizer updates parameters in place from their gradients.
public protocol Optimizer: AnyObject {
    /// The parameters it updates, in order.
    var parameters: [Parameter] { get }
    /// The learning rate used by the next `step()` (schedulers set it).
    var learningRate: Double { get set }
    /// Applies one update from the current gradients. Parameters without a gradient are skipped.
    func step() throws
}

extension Optimizer {
    /// Clears every parameter's gradient (`set_to_none=True`, PyTorch's default).
    public func zeroGrad() { for p in parameters { p.value.zeroGrad() } }
}

/// Stochastic gradient descent with PyTorch's semantics:
/// `g = grad + wd·p; buf = momentum·buf + (1 - dampening)·g` (buf = g on the first step);
/// `p -= lr · (nesterov ? g + momentum·buf : buf)`.
public final class SGD: Optimizer {
    public let parameters: [Parameter]
    public var learningRate: Double
    public let momentum: Double
    public let dampening: Double
    public let weightDecay: Double
    public let nesterov: Bool
    /// Momentum buffers, one per parameter once it has had a gradient.
    public private(set) var momentumBuffers: [Tensor?]

    /// Errors: nesterov needs momentum > 0 and dampening 0 (as in PyTorch); rates must be ≥ 0.
    public init(_ parameters: [Parameter], lr: Double, momentum: Double = 0, dampening: Double = 0,
                weightDecay: Double = 0, nesterov: Bool = false) throws {
        guard lr >= 0, momentum >= 0, weightDecay >= 0 else {
            throw TensorError.invalidArgument(op: "SGD", message: "lr \(lr), momentum \(momentum) and weight decay \(weightDecay) must be non-negative")
        }
        guard !nesterov || (momentum > 0 && dampening == 0) else {
            throw TensorError.invalidArgument(op: "SGD", message: "nesterov momentum requires momentum > 0 and dampening 0")
        }
        self.parameters = parameters
        self.learningRate = lr
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        momentumBuffers = Array(repeating: nil, count: parameters.count)
    }

    func restoreMomentum(_ i: Int, _ buffer: Tensor) throws { momentumBuffers[i] = buffer }

    public func step() throws {
        for (i, p) in parameters.enumerated() {
            guard let grad = p.grad else { continue }
            switch p.value.dtype {
            case .float64: try update(i, p, grad, Double.self)
            default: try update(i, p, grad, Float.self)
            }
        }
    }

    private func update<T: BinaryFloatingPoint>(_ i: Int, _ p: Parameter, _ grad: Tensor, _: T.Type) throws {
        let lr = T(learningRate), mu = T(momentum), wd = T(weightDecay), damp = T(1 - dampening)
        let firstStep = momentumBuffers[i] == nil
        let useMomentum = momentum != 0, nesterov = self.nesterov
        // Without momentum the buffer is never read: an empty one spares a per-step allocation.
        var buffer = takeState(&momentumBuffers[i], orZeros: useMomentum ? p.shape : [0], dtype: p.value.dtype)
        defer { if useMomentum { momentumBuffers[i] = buffer } }
        try grad.withUnsafeBufferPointer(as: T.self) { g in
            try buffer.withUnsafeMutableBufferPointer(as: T.self) { b in
                try p.value.withUnsafeMutableBufferPointer(as: T.self) { w in
                    Tandem.parallelFor(w.count, costPerItem: 2) { range in
                        for k in range {
                            var d = g[k] + wd * w[k]
                            if useMomentum {
                                b[k] = firstStep ? d : mu * b[k] + damp * d
                                d = nesterov ? d + mu * b[k] : b[k]
                            }
                            w[k] -= lr * d
                        }
                    }
                }
            }
        }
    }
}
