/// The portable CPU backend: OpenBLAS for GEMM, Tandem's own kernels for the rest; float32 and
/// float64 (bfloat16 and float16 only through their float32 forms).
struct CPUBackend: Backend {
    var name: String { "CPU (OpenBLAS and Tandem's kernels)" }

    func matmul(_ p: GemmProblem) -> Bool {
        guard p.out.dtype == .float32 || p.out.dtype == .float64 else { return false }
        func run<T: FloatElement>(_: T.Type) {
            let aBase = p.a.elementPointer(T.self), bBase = p.b.elementPointer(T.self), cBase = p.out.elementPointer(T.self)
            if p.m == 0 || p.n == 0 { return }
            FlopCounter.add(2 * p.m * p.n * p.k * p.batchCount)
            if p.k == 0 { cBase.update(repeating: 0, count: p.out.count); return }
            let work = p.m * p.n * p.k
            if p.batchCount >= Tandem.numThreads, work < Kernels.batchParallelGemmWork {
                // Many small products: one whole product per thread at a time, not each one split.
                nonisolated(unsafe) let (ab, bb, cb) = (aBase, bBase, cBase)
                Parallel.forRanges(p.batchCount, costPerItem: work) { range in
                    for bi in range {
                        let (ao, bo) = p.offsets[bi]
                        Kernels.gemm(T.self, transA: p.transA, transB: p.transB, m: p.m, n: p.n, k: p.k, a: ab + ao, lda: p.lda,
                                     b: bb + bo, ldb: p.ldb, c: cb + bi * p.m * p.n, ldc: p.n, threads: 1)
                    }
                }
                return
            }
            for bi in 0..<p.batchCount {
                let (ao, bo) = p.offsets[bi]
                Kernels.gemm(T.self, transA: p.transA, transB: p.transB, m: p.m, n: p.n, k: p.k,
                             a: aBase + ao, lda: p.lda, b: bBase + bo, ldb: p.ldb, c: cBase + bi * p.m * p.n, ldc: p.n)
            }
        }
        withExtendedLifetime(p) { if p.out.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        return true
    }

    func convolution(_ geo: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?, keep: Bool) -> (Tensor, ConvBackward?)? {
        guard input.dtype == .float32 || input.dtype == .float64 else { return nil }
        let out = Kernels.convForwardPortable(geo, input: input, weight: weight, bias: bias)
        return (out, keep ? PortableConvBackward(geo: geo, input: input, weight: weight) : nil)
    }

    func softmax(rows: Tensor, log: Bool, keepProbabilities: Bool) -> (Tensor, Tensor?)? {
        guard rows.dtype == .float32 || rows.dtype == .float64 else { return nil }
        return Kernels.softmaxRows(rows, log: log, keepProbabilities: keepProbabilities)
    }
}

/// The im2col (or direct depthwise) backward pass of a convolution the CPU backend ran.
struct PortableConvBackward: ConvBackward, @unchecked Sendable {
    let geo: ConvGeometry
    let input: Tensor, weight: Tensor

    func backward(gradOut: Tensor, needInput: Bool, needWeight: Bool, needBias: Bool) -> (input: Tensor?, weight: Tensor?, bias: Tensor?) {
        Kernels.convBackwardPortable(geo, input: input, weight: weight, gradOut: gradOut,
                                     needInput: needInput, needWeight: needWeight, needBias: needBias)
    }
}
