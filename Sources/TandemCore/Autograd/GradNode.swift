/// A node of the define-by-run autograd graph.
///
/// Op nodes hold the producing op's inputs (their nodes) and a closure mapping the gradient
/// of the op's output to the gradients of its inputs. Leaf nodes accumulate `grad` and run
/// the leaf's hooks once its gradient for a backward pass is complete.
final class GradNode: @unchecked Sendable {
    /// The op that made the tensor ("add", "conv2d", ...), or "leaf".
    let name: String
    /// Nodes of the op's inputs, one per input; nil where an input needs no gradient.
    let inputs: [GradNode?]
    /// Maps dL/d(output) to dL/d(input) for each input. Nil for leaves, and after a backward
    /// pass that did not retain the graph.
    var backwardFn: ((Tensor) throws -> [Tensor?])?

    // Leaf state.
    let isLeaf: Bool
    var grad: Tensor?
    var hooks: [(Tensor) -> Void] = []

    init(name: String, inputs: [GradNode?], backward: @escaping (Tensor) throws -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backwardFn = backward
        self.isLeaf = false
    }

    init(leaf: ()) {
        name = "leaf"
        inputs = []
        backwardFn = nil
        isLeaf = true
    }
}

/// Whether ops record the autograd graph. See `Tensor.withNoGrad`.
public enum GradMode {
    @TaskLocal static var isEnabled: Bool = true

    /// True when operations currently record gradients.
    public static var enabled: Bool { isEnabled }
}

extension Tensor {
    /// True when gradients flow to (or through) this tensor.
    public var requiresGrad: Bool { gradNode != nil }

    /// True for tensors not produced by a recorded op (user-created data and parameters).
    public var isLeaf: Bool { gradNode?.isLeaf ?? true }

    /// The accumulated gradient of a leaf that requires grad; nil otherwise or before backward.
    public var grad: Tensor? { gradNode?.isLeaf == true ? gradNode?.grad : nil }

    /// Resets a leaf's accumulated gradient to nil (`zero_grad(set_to_none=True)`).
    public func zeroGrad() { if gradNode?.isLeaf == true { gradNode?.grad = nil } }

    /// Sets a leaf's accumulated gradient (used by optimizers and DDP to write averaged
    /// gradients back). Shape must match.
    public func setGrad(_ gradient: Tensor?) throws {
        guard let node = gradNode, node.isLeaf else {
            throw TensorError.autograd("setGrad: only leaf tensors that require grad hold a gradient")
        }
        if let gradient, gradient.shape != shape {
            throw TensorError.shapeMismatch(op: "setGrad", message: "gradient \(gradient.shape) for tensor \(shape)")
        }
        node.grad = gradient
    }

    /// A leaf sharing this tensor's data that requires (or not) a gradient.
    /// `x = Tensor.randn([3]).requiringGrad()`.
    public func requiringGrad(_ flag: Bool = true) -> Tensor {
        var t = self
        t.gradNode = flag ? GradNode(leaf: ()) : nil
        return t
    }

    /// The same data cut off from the graph.
    public func detach() -> Tensor {
        var t = self
        t.gradNode = nil
        return t
    }

    /// Registers a hook on a leaf that requires grad. It runs after each backward pass
    /// in which the leaf's gradient became complete, with the accumulated gradient.
    public func registerHook(_ hook: @escaping (Tensor) -> Void) throws {
        guard let node = gradNode, node.isLeaf else {
            throw TensorError.autograd("registerHook: hooks go on leaf tensors that require grad")
        }
        node.hooks.append(hook)
    }

    /// Runs `body` without recording the graph (`torch.no_grad()`).
    public static func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
        try GradMode.$isEnabled.withValue(false, operation: body)
    }

    /// Runs `body` with graph recording on (inside a no-grad region, turns it back on).
    public static func withGrad<R>(_ body: () throws -> R) rethrows -> R {
        try GradMode.$isEnabled.withValue(true, operation: body)
    }

    /// This tensor as the output of `node` (used by `Dispatch.record` and `customFunction`).
    func withGradNode(_ node: GradNode) -> Tensor {
        var out = self
        out.gradNode = node
        return out
    }
}
