import TandemNN

/// Optimizer state as named tensors, for checkpoints: `<kind>.<parameter index>` plus scalars.
public protocol StatefulOptimizer: Optimizer {
    /// Every state tensor by name (learning rate and step counts included as tensors).
    func stateDict() -> [(String, Tensor)]
    /// Restores state saved by `stateDict()`; the parameter count and shapes must match.
    func loadStateDict(_ state: [String: Tensor]) throws
}

enum OptimizerStateError {
    static func check(_ name: String, _ t: Tensor, _ p: Parameter) throws {
        guard t.shape == p.shape else {
            throw ModuleError.shapeMismatch(name: name, expected: p.shape, got: t.shape)
        }
    }
}

extension SGD: StatefulOptimizer {
    public func stateDict() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = [("lr", Tensor([learningRate], shape: [1], dtype: .float64))]
        for (i, b) in momentumBuffers.enumerated() { if let b { out.append(("momentum_buffer.\(i)", b)) } }
        return out
    }

    public func loadStateDict(_ state: [String: Tensor]) throws {
        if let lr = state["lr"] { learningRate = try lr.item() }
        for (i, p) in parameters.enumerated() {
            if let b = state["momentum_buffer.\(i)"] {
                try OptimizerStateError.check("momentum_buffer.\(i)", b, p)
                try restoreMomentum(i, b.to(p.value.dtype))
            }
        }
    }
}

extension Adam: StatefulOptimizer {
    public func stateDict() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = [("lr", Tensor([learningRate], shape: [1], dtype: .float64))]
        for i in parameters.indices {
            out.append(("step.\(i)", Tensor(int64: [steps[i]])))
            if let m = expAvg[i] { out.append(("exp_avg.\(i)", m)) }
            if let v = expAvgSq[i] { out.append(("exp_avg_sq.\(i)", v)) }
            if let x = maxExpAvgSq[i] { out.append(("max_exp_avg_sq.\(i)", x)) }
        }
        return out
    }

    public func loadStateDict(_ state: [String: Tensor]) throws {
        if let lr = state["lr"] { learningRate = try lr.item() }
        for (i, p) in parameters.enumerated() {
            let step = try state["step.\(i)"].map { Int(try $0.item()) }
            var moments: [Tensor?] = []
            for name in ["exp_avg.\(i)", "exp_avg_sq.\(i)", "max_exp_avg_sq.\(i)"] {
                if let t = state[name] { try OptimizerStateError.check(name, t, p) }
                moments.append(state[name]?.to(p.value.dtype))
            }
            restore(i, step: step, expAvg: moments[0], expAvgSq: moments[1], maxExpAvgSq: moments[2])
        }
    }
}

/// Moves a per-parameter state tensor out of its slot (or makes zeros), so that the update
/// writes it in place: a copy left in the slot would make every step copy it first.
func takeState(_ slot: inout Tensor?, orZeros shape: [Int], dtype: DType) -> Tensor {
    defer { slot = nil }
    return slot ?? Tensor.zeros(shape, dtype: dtype)
}
