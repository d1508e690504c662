/// A set of kernels that ops run on. The dispatcher lists the backends that may run an op on
/// its operands, best first (`Backends.candidates`); the op runs on the first that takes the
/// call. A backend refuses (nil or false) what it cannot run fast or at all, and the next one
/// runs it: the portable CPU backend takes everything in float32 and float64.
///
/// Each backend keeps its raw-pointer code in its own folder (`Backends/CPU`,
/// `Backends/OneDNN`). A GPU backend (CUDA with cuBLAS and cuDNN, NCCL for the collectives)
/// would be a third folder: a `CUDABackend` conforming here, chosen by `candidates` for tensors
/// whose storage lives on the device; op files and `Derivatives` would not change, since rules
/// call ops and backward kernels through the same backends.
protocol Backend: Sendable {
    /// The backend's name, as `tandem advise` prints it.
    var name: String { get }

    /// Every product of `problem` written into its output; false (and nothing written) when
    /// this backend does not run it.
    func matmul(_ problem: GemmProblem) -> Bool

    /// `input ⋆ weight + bias` for `geo` (contiguous NCHW operands of one dtype) and the state its
    /// backward pass needs (`keep`); nil when this backend does not run it.
    func convolution(_ geo: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?, keep: Bool) -> (Tensor, ConvBackward?)?

    /// Softmax or log-softmax of every row of `rows` (contiguous, the axis last) and, for
    /// log-softmax with `keepProbabilities`, the softmax too; nil when this backend does not run it.
    func softmax(rows: Tensor, log: Bool, keepProbabilities: Bool) -> (Tensor, Tensor?)?
}

/// How a convolution's backward pass runs: on the backend that ran its forward pass.
protocol ConvBackward: Sendable {
    /// The gradients of input, weight and bias for the output gradient `gradOut` (contiguous, the
    /// output's dtype); nil for those not asked for.
    func backward(gradOut: Tensor, needInput: Bool, needWeight: Bool, needBias: Bool) -> (input: Tensor?, weight: Tensor?, bias: Tensor?)
}

/// The registered backends and the choice between them.
enum Backends {
    static let cpu = CPUBackend()
    static let oneDNN = OneDNNBackend()

    /// The backends that may run `op` on operands of `dtype`, best first. oneDNN comes first where
    /// it has kernels for the op (it refuses the sizes it would run slower, per `KernelRoutes`).
    static func candidates(for op: Op, dtype: DType) -> [any Backend] {
        switch op {
        case .matmul, .conv1d, .conv2d, .softmax, .logSoftmax:
            return dtype == .float64 ? [cpu] : [oneDNN, cpu]
        default:
            return [cpu]
        }
    }
}

extension Backends {
    /// The result of the first candidate backend for `op` that runs `body` (non-nil), each tried
    /// at most once; nil when none does.
    static func first<R>(for op: Op, dtype: DType, _ body: (any Backend) -> R?) -> R? {
        for backend in candidates(for: op, dtype: dtype) {
            if let result = body(backend) { return result }
        }
        return nil
    }
}

/// A batch of matrix products `C[b] = A[b] · B[b]` over row-major buffers with leading
/// dimensions (operands possibly transposed views; batch dimensions broadcast).
struct GemmProblem {
    /// The operands as GEMM can read them (contiguous copies where a view could not be), with
    /// their transposition and leading dimension.
    let a: Tensor, transA: Bool, lda: Int
    let b: Tensor, transB: Bool, ldb: Int
    /// The contiguous output `[batch..., m, n]`.
    let out: Tensor
    let m: Int, n: Int, k: Int
    /// The number of products, and each product's element offsets into `a` and `b`.
    let batchCount: Int
    let offsets: [(a: Int, b: Int)]
}
