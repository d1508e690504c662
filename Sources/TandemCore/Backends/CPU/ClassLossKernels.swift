/// Cross entropy and NLL over `[rows, C]` class rows: per-row losses forward, the input gradient
/// backward (the tensor-level entry points of LossKernels.swift).
extension Kernels {
    /// Per-row losses, the number of rows that are not `ignoreIndex`, and the labels.
    struct ClassLoss {
        let perRow: [Double]
        let kept: Int
        let labels: Tensor
        /// The softmax of every row (cross entropy with `keepProbabilities`).
        let probabilities: Tensor?
    }

    /// Cross entropy of contiguous `rows` `[R, C]` against int64 `labels` `[R]` (any shape of R
    /// elements), with label smoothing.
    static func crossEntropyForward(_ rows: Tensor, classes c: Int, labels: Tensor, ignoreIndex: Int, smoothing: Double,
                                    keepProbabilities: Bool) -> ClassLoss {
        let r = rows.count / Swift.max(c, 1)
        let probs = keepProbabilities ? Tensor(uninitializedShape: rows.shape, dtype: rows.dtype) : nil
        var perRow = [Double](repeating: 0, count: r)
        perRow.withUnsafeMutableBufferPointer { lb in
            func run<T: FloatElement>(_: T.Type) {
                crossEntropyForward(rows.elementPointer(T.self), rows: r, c: c, labels: labels.elementPointer(Int64.self),
                                    ignoreIndex: Int64(ignoreIndex), smoothing: smoothing, loss: lb.baseAddress!,
                                    probs: probs.map { $0.elementPointer(T.self) })
            }
            withExtendedLifetime((rows, labels)) { if rows.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        }
        return ClassLoss(perRow: perRow, kept: keptCount(labels, ignoreIndex), labels: labels, probabilities: probs)
    }

    /// NLL of contiguous log-probability `rows` `[R, C]` against int64 `labels`.
    static func nllForward(_ rows: Tensor, classes c: Int, labels: Tensor, ignoreIndex: Int) -> ClassLoss {
        let r = rows.count / Swift.max(c, 1)
        var perRow = [Double](repeating: 0, count: r)
        perRow.withUnsafeMutableBufferPointer { lb in
            func run<T: FloatElement>(_: T.Type) {
                nllForward(rows.elementPointer(T.self), rows: r, c: c, labels: labels.elementPointer(Int64.self),
                           ignoreIndex: Int64(ignoreIndex), loss: lb.baseAddress!)
            }
            withExtendedLifetime((rows, labels)) { if rows.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        }
        return ClassLoss(perRow: perRow, kept: keptCount(labels, ignoreIndex), labels: labels, probabilities: nil)
    }

    private static func keptCount(_ labels: Tensor, _ ignoreIndex: Int) -> Int {
        labels.toIntArray().reduce(0) { $0 + ($1 == ignoreIndex ? 0 : 1) }
    }

    /// The gradient of a class loss with respect to its `[R, C]` rows for the loss gradient `g`.
    static func classLossBackward(_ state: ClassLossState, gradOut g: Tensor) throws -> Tensor {
        let c = state.classes, ignore = Int64(state.ignoreIndex), labels = state.labels
        // dL/d(per-row loss), read with `stride` (0: one value shared by every row).
        let (scale, stride): (Tensor, Int) = switch state.reduction {
        case .none: (g.detach().contiguousStorage(), 1)
        case .sum: (try g.detach().reshape([1]).contiguous(), 0)
        case .mean: (try (g.detach() / Double(state.kept)).reshape([1]).contiguous(), 0)
        }
        let dx: Tensor
        switch state.kind {
        case let .crossEntropy(probabilities, smoothing):
            guard let probs = probabilities else { throw TensorError.autograd("crossEntropy: the forward pass kept no softmax") }
            let r = probs.count / Swift.max(c, 1)
            dx = Tensor(uninitializedShape: probs.shape, dtype: probs.dtype)
            func run<T: FloatElement>(_: T.Type) {
                crossEntropyBackward(probs.elementPointer(T.self), dx.elementPointer(T.self), rows: r, c: c,
                                     labels: labels.elementPointer(Int64.self), ignoreIndex: ignore, smoothing: smoothing,
                                     scale: scale.elementPointer(T.self), scaleStride: stride)
            }
            withExtendedLifetime((probs, labels, scale)) { if probs.dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        case let .nll(rowsShape):
            let dtype = scale.dtype
            let r = Shape.count(rowsShape) / Swift.max(c, 1)
            dx = Tensor.zeros(rowsShape, dtype: dtype)
            func run<T: FloatElement>(_: T.Type) {
                nllBackward(dx.elementPointer(T.self), rows: r, c: c, labels: labels.elementPointer(Int64.self),
                            ignoreIndex: ignore, scale: scale.elementPointer(T.self), scaleStride: stride)
            }
            withExtendedLifetime((labels, scale)) { if dtype == .float64 { run(Double.self) } else { run(Float.self) } }
        }
        // Undo the class-axis move of `[N, C, d1, ...]` inputs.
        return state.inputShape.count <= 2 ? dx : try dx.movedBack(from: 1, shape: state.inputShape)
    }
}

/// What cross entropy and NLL keep for their gradient.
struct ClassLossState: @unchecked Sendable {
    enum Kind {
        case crossEntropy(probabilities: Tensor?, smoothing: Double)
        case nll(rowsShape: [Int])
    }
    let kind: Kind
    let labels: Tensor
    let ignoreIndex: Int
    let classes: Int
    let reduction: Reduction
    let kept: Int
    let inputShape: [Int]
}
