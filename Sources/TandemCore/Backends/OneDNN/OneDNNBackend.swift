/// oneDNN's kernels: float32 convolution and mid-size float32 matmul where they beat the CPU
/// backend (`KernelRoutes`), all bfloat16 products, large float32 softmax and eltwise.
struct OneDNNBackend: Backend {
    var name: String { "oneDNN" }

    func matmul(_ p: GemmProblem) -> Bool {
        let dtype = p.out.dtype
        guard dtype == .bfloat16 || (dtype == .float32 && DNNLMatmul.prefersFloat32(m: p.m, n: p.n, k: p.k)),
              p.m > 0, p.n > 0, p.k > 0 else { return false }
        let size = dtype.byteSize
        return withExtendedLifetime(p) {
            let aBase = p.a.rawElements, bBase = p.b.rawElements, cBase = p.out.rawElements
            for bi in 0..<p.batchCount {
                let (ao, bo) = p.offsets[bi]
                let done = DNNLMatmul.gemm(transA: p.transA, transB: p.transB, m: p.m, n: p.n, k: p.k,
                                           a: aBase + size * ao, lda: p.lda, b: bBase + size * bo, ldb: p.ldb,
                                           c: cBase + size * bi * p.m * p.n, ldc: p.n, float32: dtype == .float32)
                // The products share one plan: a refusal comes at the first, before anything is written.
                if !done { return false }
            }
            FlopCounter.add(2 * p.m * p.n * p.k * p.batchCount)
            return true
        }
    }

    func convolution(_ geo: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?, keep: Bool) -> (Tensor, ConvBackward?)? {
        guard let (out, saved) = Kernels.convForwardDNNL(geo, input: input, weight: weight, bias: bias, keep: keep) else { return nil }
        return (out, saved.map { OneDNNConvBackward(saved: $0, input: input, weight: weight) })
    }

    func softmax(rows: Tensor, log: Bool, keepProbabilities: Bool) -> (Tensor, Tensor?)? {
        Kernels.softmaxRowsDNNL(rows, log: log, keepProbabilities: keepProbabilities)
    }
}

/// The backward pass of a convolution oneDNN ran, on the primitives its forward pass kept.
struct OneDNNConvBackward: ConvBackward, @unchecked Sendable {
    let saved: DNNLConvSaved
    let input: Tensor, weight: Tensor

    func backward(gradOut: Tensor, needInput: Bool, needWeight: Bool, needBias: Bool) -> (input: Tensor?, weight: Tensor?, bias: Tensor?) {
        Kernels.convBackwardDNNL(saved, input: input, weight: weight, gradOut: gradOut,
                                 needInput: needInput, needWeight: needWeight, needBias: needBias)
    }
}
