/// Softmax and log-softmax along one axis, on the first backend that runs their rows.
extension Tensor {
    /// exp(x) / sum(exp(x)) along `axis`, computed stably.
    public func softmax(axis: Int) throws -> Tensor {
        try Dispatch.run(.softmax, self) { x in
            try Kernels.requireFloat(x, "softmax")
            let a = try Shape.normalizeAxis(axis, rank: x.rank, op: "softmax")
            let (out, _) = try x.softmaxRows(axis: a, log: false, keepProbabilities: false)
            return Dispatch.record(.softmax, out, inputs: [x], axes: [a])
        }
    }

    /// x - logsumexp(x) along `axis`, computed stably.
    public func logSoftmax(axis: Int) throws -> Tensor {
        try Dispatch.run(.logSoftmax, self) { x in
            try Kernels.requireFloat(x, "logSoftmax")
            let a = try Shape.normalizeAxis(axis, rank: x.rank, op: "logSoftmax")
            // With a graph, keep softmax = exp(out) from the forward pass: backward then needs no exp.
            let (out, probabilities) = try x.softmaxRows(axis: a, log: true, keepProbabilities: GradMode.enabled && x.requiresGrad)
            return Dispatch.record(.logSoftmax, out, inputs: [x], axes: [a], tensors: probabilities.map { [$0] } ?? [])
        }
    }

    private func softmaxRows(axis a: Int, log: Bool, keepProbabilities: Bool) throws -> (Tensor, Tensor?) {
        let rows = try movedToLast(a)
        guard let (out, probabilities) = Backends.first(for: log ? .logSoftmax : .softmax, dtype: dtype, {
            $0.softmax(rows: rows, log: log, keepProbabilities: keepProbabilities)
        }) else {
            throw TensorError.dtypeMismatch(op: log ? "logSoftmax" : "softmax", message: "no backend runs \(dtype)")
        }
        return (try out.movedBack(from: a, shape: shape), try probabilities?.movedBack(from: a, shape: shape))
    }
}
