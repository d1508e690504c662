extension Tensor {
    /// Computes gradients of this tensor with respect to every leaf that requires grad and
    /// accumulates them into the leaves' `grad`.
    ///
    /// - Parameters:
    ///   - gradient: dL/d(self), shaped like `self`; may be omitted for one-element tensors.
    ///   - retainGraph: keep the graph so that `backward` can run through it again.
    ///
    /// The graph is walked in an iterative topological order (no recursion, so deep graphs
    /// are fine). A tensor used twice receives the sum of both contributions. A leaf's hooks
    /// run as soon as all contributions to its gradient in this pass have arrived.
    public func backward(_ gradient: Tensor? = nil, retainGraph: Bool = false) throws {
        guard let root = gradNode else {
            throw TensorError.autograd("backward: this tensor does not require grad and has no graph")
        }
        let seed: Tensor
        if let gradient {
            guard gradient.shape == shape else {
                throw TensorError.shapeMismatch(op: "backward", message: "gradient \(gradient.shape) for output \(shape)")
            }
            seed = gradient
        } else {
            guard count == 1 else {
                throw TensorError.autograd("backward: a gradient can be implied only for one-element outputs; output has shape \(shape)")
            }
            seed = Tensor.ones(shape, dtype: dtype)
        }
        try Dispatch.backwardPass { try AutogradEngine.run(root: root, seed: seed, retainGraph: retainGraph) }
    }
}

enum AutogradEngine {
    static func run(root: GradNode, seed: Tensor, retainGraph: Bool) throws {
        // Count, for every node reachable from the root, how many edges point into it.
        var dependencies: [ObjectIdentifier: Int] = [ObjectIdentifier(root): 0]
        var stack: [GradNode] = [root]
        while let node = stack.popLast() {
            for case let input? in node.inputs {
                let id = ObjectIdentifier(input)
                if let seen = dependencies[id] {
                    dependencies[id] = seen + 1
                } else {
                    dependencies[id] = 1
                    stack.append(input)
                }
            }
        }

        var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
        var ready: [GradNode] = [root]
        while let node = ready.popLast() {
            let id = ObjectIdentifier(node)
            guard let gradient = pending.removeValue(forKey: id) else {
                // No gradient reached this node; its inputs still lose one dependency each.
                for case let input? in node.inputs {
                    let inputID = ObjectIdentifier(input)
                    let remaining = dependencies[inputID, default: 1] - 1
                    dependencies[inputID] = remaining
                    if remaining == 0 { ready.append(input) }
                }
                continue
            }
            if node.isLeaf {
                node.grad = try node.grad.map { try $0 + gradient } ?? gradient
                if let total = node.grad { for hook in node.hooks { hook(total) } }
                continue
            }
            guard let backward = node.backwardFn else {
                throw TensorError.autograd(
                    "backward: the graph through '\(node.name)' was already freed; pass retainGraph: true to the first backward call")
            }
            let inputGradients = try backward(gradient)
            if !retainGraph { node.backwardFn = nil }
            for (input, inputGradient) in zip(node.inputs, inputGradients) {
                guard let input else { continue }
                let inputID = ObjectIdentifier(input)
                if let inputGradient {
                    pending[inputID] = try pending[inputID].map { try $0 + inputGradient } ?? inputGradient
                }
                let remaining = dependencies[inputID, default: 1] - 1
                dependencies[inputID] = remaining
                if remaining == 0 { ready.append(input) }
            }
        }
    }
}
