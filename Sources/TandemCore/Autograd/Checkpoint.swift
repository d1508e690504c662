extension Tensor {
    /// Activation checkpointing (`torch.utils.checkpoint`): runs `body(input)` without keeping
    /// its intermediate tensors, and runs it again in the backward pass (with the autocast setting
    /// of the forward) to compute the gradients of `input` and of every parameter `body` uses.
    /// Gradients equal those of calling `body` directly when `body` is deterministic (seeded
    /// dropout is; `Generator`-drawn randomness is not). Without grad mode, or when `input` needs
    /// no gradient, this is `body(input)`.
    public static func checkpoint(_ input: Tensor, _ body: @escaping (Tensor) throws -> Tensor) throws -> Tensor {
        guard GradMode.isEnabled, input.requiresGrad else { return try body(input) }
        let dtype = Autocast.dtype
        let saved = input.detach()
        let value = try withNoGrad { try body(saved) }
        return customFunction("checkpoint", value: value, inputs: [input]) { g in
            let x = saved.requiringGrad()
            let y = try withGrad { try Autocast.$dtype.withValue(dtype) { try body(x) } }
            try y.backward(g.dtype == y.dtype ? g : g.to(y.dtype))
            return [x.grad]
        }
    }
}
