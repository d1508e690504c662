import TandemCore

/// Finite-difference gradient checking in float64.
public enum GradCheck {
    /// The outcome of a check: the worst element and a readable report.
    public struct Result: CustomStringConvertible {
        public var passed: Bool
        public var worstAbsoluteError: Double
        public var report: String
        public var description: String { report }
    }

    /// Compares autograd's gradients of `L = sum(f(inputs) * upstream)` with central
    /// differences, for every input that is floating point. Inputs are converted to float64.
    /// `|analytic - numeric| <= atol + rtol * |numeric|` must hold elementwise.
    public static func check(_ inputs: [Tensor], eps: Double = 1e-6, atol: Double = 1e-6, rtol: Double = 1e-5,
                             seed: UInt64 = 7, _ f: ([Tensor]) throws -> Tensor) throws -> Result {
        let leaves = inputs.map { $0.dtype.isFloatingPoint ? $0.to(.float64).requiringGrad() : $0 }
        let out = try f(leaves)
        let upstream = Tensor.randn(out.shape, dtype: .float64, generator: Generator(seed: seed))
        try (out * upstream).sum().backward()
        func objective(_ xs: [Tensor]) throws -> Double {
            try Tensor.withNoGrad { try (f(xs) * upstream).sum().item() }
        }
        var worst = 0.0
        var failures: [String] = []
        for (k, leaf) in leaves.enumerated() where leaf.dtype.isFloatingPoint {
            let analytic = leaf.grad?.toDoubleArray() ?? [Double](repeating: 0, count: leaf.count)
            var values = leaf.toDoubleArray()
            for i in 0..<values.count {
                let original = values[i]
                var plus = leaves.map { $0.detach() }, minus = plus
                values[i] = original + eps
                plus[k] = Tensor(values, shape: leaf.shape, dtype: .float64)
                values[i] = original - eps
                minus[k] = Tensor(values, shape: leaf.shape, dtype: .float64)
                values[i] = original
                let numeric = (try objective(plus) - objective(minus)) / (2 * eps)
                let error = Swift.abs(analytic[i] - numeric)
                worst = Swift.max(worst, error)
                if error > atol + rtol * Swift.abs(numeric), failures.count < 5 {
                    failures.append("input \(k) element \(i): analytic \(analytic[i]) numeric \(numeric)")
                }
            }
        }
        let report = failures.isEmpty ? "gradcheck passed (worst abs error \(worst))"
                                      : "gradcheck failed: " + failures.joined(separator: "; ")
        return Result(passed: failures.isEmpty, worstAbsoluteError: worst, report: report)
    }
}
