import Foundation

extension Tensor {
    /// Matrix product with NumPy semantics: 1-D operands are promoted (and the added
    /// dimension removed afterwards); batch dimensions broadcast.
    /// `[..., m, k] · [..., k, n] → [..., m, n]`.
    ///
    /// Under `autocast`, float32 operands are first converted to the autocast dtype.
    /// bfloat16 operands (both) run on oneDNN's bfloat16 matmul (float32 accumulation,
    /// bfloat16 result) where it is available. float16 operands, and bfloat16 ones oneDNN
    /// refuses, are multiplied in float32 and the result rounded to their dtype.
    public static func matmul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try Dispatch.run(.matmul, [a, b]) { operands in
            let (a, b) = (operands[0]!, operands[1]!)
            if a.dtype != .bfloat16 { try Kernels.requireFloat(a, "matmul") }
            guard a.dtype == b.dtype else {
                throw TensorError.dtypeMismatch(op: "matmul", message: "\(a.dtype) and \(b.dtype)")
            }
            guard a.rank >= 1, b.rank >= 1 else {
                throw TensorError.shapeMismatch(op: "matmul", message: "operands must have at least one dimension, got \(a.shape) and \(b.shape)")
            }
            let a2 = a.rank == 1 ? try a.unsqueeze(0) : a
            let b2 = b.rank == 1 ? try b.unsqueeze(1) : b
            var out = try batchedMatmul(a2, b2)
            if a.rank == 1 { out = try out.squeeze(-2) }
            if b.rank == 1 { out = try out.squeeze(-1) }
            return out
        }
    }

    /// Batched matmul of operands with rank ≥ 2 and broadcastable batch dimensions, on the
    /// first backend that runs it.
    static func batchedMatmul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1]
        let k2 = b.shape[b.rank - 2], n = b.shape[b.rank - 1]
        guard k == k2 else {
            throw TensorError.shapeMismatch(op: "matmul", message: "\(a.shape) · \(b.shape): inner dimensions \(k) and \(k2) differ")
        }
        let batch = try Shape.broadcast(Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)), op: "matmul")
        let problem = Kernels.gemmProblem(a, b, batch: batch, m: m, n: n, k: k)
        guard Backends.candidates(for: .matmul, dtype: a.dtype).contains(where: { $0.matmul(problem) }) else {
            // bfloat16 that no backend runs: float32 compute on the (exactly) widened operands.
            return try batchedMatmul(a.to(.float32), b.to(.float32)).to(a.dtype)
        }
        return Dispatch.record(.matmul, problem.out, inputs: [a, b])
    }

    /// `torch.bmm`: `[B, m, k] · [B, k, n] → [B, m, n]` (no broadcasting).
    public static func bmm(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        guard a.rank == 3, b.rank == 3, a.shape[0] == b.shape[0] else {
            throw TensorError.shapeMismatch(op: "bmm", message: "needs [B, m, k] and [B, k, n], got \(a.shape) and \(b.shape)")
        }
        return try matmul(a, b)
    }

    /// `F.linear`: `x [..., in] · weightᵀ [in, out] + bias [out] → [..., out]`.
    /// Under `autocast` it runs in the autocast dtype and returns that dtype.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        // Under autocast, weight and bias join the low dtype (PyTorch's addmm), so the output is
        // low too; the weight is converted before the transpose, so the conversion reads it in order.
        try Dispatch.run(.linear, [x, weight, bias]) { operands in
            try linearProduct(operands[0]!, weight: operands[1]!, bias: operands[2])
        }
    }

    private static func linearProduct(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        guard weight.rank == 2, x.rank >= 1, x.shape[x.rank - 1] == weight.shape[1] else {
            throw TensorError.shapeMismatch(op: "linear", message: "input \(x.shape) does not fit weight \(weight.shape) (expects [..., \(weight.rank == 2 ? weight.shape[1] : -1)])")
        }
        if let bias, bias.shape != [weight.shape[0]] {
            throw TensorError.shapeMismatch(op: "linear", message: "bias \(bias.shape) for weight \(weight.shape)")
        }
        let flat = try x.reshape([-1, weight.shape[1]])
        var out = try matmul(flat, weight.t())
        if let bias { out = try out + bias }
        return try out.reshape(Array(x.shape.dropLast()) + [weight.shape[0]])
    }

    /// Einstein summation for the common two-operand contractions, e.g. `"bij,bjk->bik"`,
    /// `"ij,kj->ik"`, `"bhld,bhmd->bhlm"`. Each label appears in one or both inputs; labels
    /// missing from the output are summed. Lowered to permute + batched matmul.
    public static func einsum(_ equation: String, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        let parts = equation.replacingOccurrences(of: " ", with: "").components(separatedBy: "->")
        let inputs = parts.first?.components(separatedBy: ",") ?? []
        guard parts.count == 2, inputs.count == 2 else {
            throw TensorError.invalidArgument(op: "einsum", message: "equation '\(equation)' must look like 'ij,jk->ik'")
        }
        let la = Array(inputs[0]), lb = Array(inputs[1]), lo = Array(parts[1])
        guard la.count == a.rank, lb.count == b.rank, Set(la).count == la.count, Set(lb).count == lb.count,
              Set(lo).count == lo.count, lo.allSatisfy({ la.contains($0) || lb.contains($0) }) else {
            throw TensorError.invalidArgument(op: "einsum", message: "equation '\(equation)' does not fit shapes \(a.shape) and \(b.shape) (repeated or unknown labels)")
        }
        var size: [Character: Int] = [:]
        for (l, s) in Array(zip(la, a.shape)) + Array(zip(lb, b.shape)) {
            if let known = size[l], known != s, known != 1, s != 1 {
                throw TensorError.shapeMismatch(op: "einsum", message: "label '\(l)' has sizes \(known) and \(s)")
            }
            size[l] = Swift.max(size[l] ?? 1, s)
        }
        // Classify labels: batch (in a, b, out), m (a, out), n (b, out), contracted (a, b, not out).
        let batch = lo.filter { la.contains($0) && lb.contains($0) }
        let mLabels = lo.filter { la.contains($0) && !lb.contains($0) }
        let nLabels = lo.filter { lb.contains($0) && !la.contains($0) }
        let kLabels = la.filter { lb.contains($0) && !lo.contains($0) }
        // Labels only in one input and not in the output are summed out first.
        var a1 = a, la1 = la
        for l in la where !lb.contains(l) && !lo.contains(l) {
            a1 = try a1.sum(axes: [la1.firstIndex(of: l)!]); la1.removeAll { $0 == l }
        }
        var b1 = b, lb1 = lb
        for l in lb where !la.contains(l) && !lo.contains(l) {
            b1 = try b1.sum(axes: [lb1.firstIndex(of: l)!]); lb1.removeAll { $0 == l }
        }
        func sz(_ ls: [Character]) -> Int { ls.reduce(1) { $0 * size[$1]! } }
        let ap = try a1.permute((batch + mLabels + kLabels).map { la1.firstIndex(of: $0)! })
            .expand(batch.map { size[$0]! } + mLabels.map { size[$0]! } + kLabels.map { size[$0]! })
            .reshape([sz(batch), sz(mLabels), sz(kLabels)])
        let bp = try b1.permute((batch + kLabels + nLabels).map { lb1.firstIndex(of: $0)! })
            .expand(batch.map { size[$0]! } + kLabels.map { size[$0]! } + nLabels.map { size[$0]! })
            .reshape([sz(batch), sz(kLabels), sz(nLabels)])
        let product = try matmul(ap, bp).reshape((batch + mLabels + nLabels).map { size[$0]! })
        let order = lo.map { (batch + mLabels + nLabels).firstIndex(of: $0)! }
        return try product.permute(order).contiguous()
    }
}
