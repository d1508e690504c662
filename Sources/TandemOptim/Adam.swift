import Foundation
import TandemNN

/// Adam and AdamW with PyTorch's semantics. Adam's `weightDecay` is L2 (`g += wd·p`);
/// AdamW (`decoupled: true`) multiplies `p` by `1 - lr·wd` first. Bias-corrected moments,
/// denominator `sqrt(v)/sqrt(1-β2^t) + eps`; `amsgrad` keeps the running maximum of `v`.
public final class Adam: Optimizer {
    public let parameters: [Parameter]
    public var learningRate: Double
    public let beta1: Double, beta2: Double, eps: Double, weightDecay: Double
    public let amsgrad: Bool
    public let decoupledWeightDecay: Bool
    /// Per-parameter state: step count and first/second moments (and max second moment).
    public private(set) var steps: [Int]
    public private(set) var expAvg: [Tensor?]
    public private(set) var expAvgSq: [Tensor?]
    public private(set) var maxExpAvgSq: [Tensor?]

    public init(_ parameters: [Parameter], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                weightDecay: Double = 0, amsgrad: Bool = false, decoupled: Bool = false) throws {
        guard lr >= 0, eps >= 0, weightDecay >= 0, (0..<1).contains(betas.0), (0..<1).contains(betas.1) else {
            throw TensorError.invalidArgument(op: decoupled ? "AdamW" : "Adam",
                                              message: "need lr, eps, weight decay ≥ 0 and betas in [0, 1); got lr \(lr) betas \(betas) eps \(eps) wd \(weightDecay)")
        }
        self.parameters = parameters
        learningRate = lr
        (beta1, beta2) = betas
        self.eps = eps
        self.weightDecay = weightDecay
        self.amsgrad = amsgrad
        decoupledWeightDecay = decoupled
        steps = Array(repeating: 0, count: parameters.count)
        expAvg = Array(repeating: nil, count: parameters.count)
        expAvgSq = Array(repeating: nil, count: parameters.count)
        maxExpAvgSq = Array(repeating: nil, count: parameters.count)
    }

    /// AdamW: Adam with decoupled weight decay (default 0.01, as in PyTorch).
    public static func adamW(_ parameters: [Parameter], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                             eps: Double = 1e-8, weightDecay: Double = 0.01, amsgrad: Bool = false) throws -> Adam {
        try Adam(parameters, lr: lr, betas: betas, eps: eps, weightDecay: weightDecay, amsgrad: amsgrad, decoupled: true)
    }

    func restore(_ i: Int, step: Int?, expAvg m: Tensor?, expAvgSq v: Tensor?, maxExpAvgSq x: Tensor?) {
        if let step { steps[i] = step }
        if let m { expAvg[i] = m }
        if let v { expAvgSq[i] = v }
        if let x { maxExpAvgSq[i] = x }
    }

    public func step() throws {
        for (i, p) in parameters.enumerated() {
            guard let grad = p.grad else { continue }
            steps[i] += 1
            switch p.value.dtype {
            case .float64: try update(i, p, grad, Double.self)
            default: try update(i, p, grad, Float.self)
            }
        }
    }

    private func update<T: BinaryFloatingPoint>(_ i: Int, _ p: Parameter, _ grad: Tensor, _: T.Type) throws {
        let t = Double(steps[i])
        let lr = learningRate, wd = weightDecay
        let b1 = T(beta1), b2 = T(beta2), epsT = T(eps)
        let correction1 = 1 - Foundation.pow(beta1, t)
        let correction2Sqrt = T((1 - Foundation.pow(beta2, t)).squareRoot())
        let stepSize = T(lr / correction1)
        let decay = T(1 - lr * wd), l2 = T(wd)
        let decoupled = decoupledWeightDecay, ams = amsgrad
        var m = takeState(&expAvg[i], orZeros: p.shape, dtype: p.value.dtype)
        var v = takeState(&expAvgSq[i], orZeros: p.shape, dtype: p.value.dtype)
        var vMax = takeState(&maxExpAvgSq[i], orZeros: ams ? p.shape : [0], dtype: p.value.dtype)
        // Put the state back also when the update throws.
        defer {
            expAvg[i] = m
            expAvgSq[i] = v
            if ams { maxExpAvgSq[i] = vMax }
        }
        try grad.withUnsafeBufferPointer(as: T.self) { g in
            try m.withUnsafeMutableBufferPointer(as: T.self) { mb in
                try v.withUnsafeMutableBufferPointer(as: T.self) { vb in
                    try vMax.withUnsafeMutableBufferPointer(as: T.self) { xb in
                        try p.value.withUnsafeMutableBufferPointer(as: T.self) { w in
                            Tandem.parallelFor(w.count, costPerItem: 8) { range in
                                if decoupled && !ams {
                                    // AdamW without amsgrad, the usual case: one branch-free loop.
                                    let (c1, c2, inverse) = (1 - b1, 1 - b2, 1 / correction2Sqrt)
                                    for k in range {
                                        let gk = g[k]
                                        let mk = b1 * mb[k] + c1 * gk, vk = b2 * vb[k] + c2 * gk * gk
                                        mb[k] = mk
                                        vb[k] = vk
                                        w[k] = w[k] * decay - stepSize * mk / (vk.squareRoot() * inverse + epsT)
                                    }
                                    return
                                }
                                for k in range {
                                    var gk = g[k]
                                    if decoupled { w[k] *= decay } else { gk += l2 * w[k] }
                                    mb[k] = b1 * mb[k] + (1 - b1) * gk
                                    vb[k] = b2 * vb[k] + (1 - b2) * gk * gk
                                    var second = vb[k]
                                    if ams { xb[k] = Swift.max(xb[k], vb[k]); second = xb[k] }
                                    w[k] -= stepSize * mb[k] / (second.squareRoot() / correction2Sqrt + epsT)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
