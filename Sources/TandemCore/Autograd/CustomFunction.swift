extension Tensor {
    /// Attaches a hand-written backward to `value`, like `torch.autograd.Function`: when grad
    /// mode is on and any of `inputs` requires grad, `value` becomes the output of an op whose
    /// backward maps dL/d(value) to one gradient per input (nil where none is needed), each
    /// shaped like that input. Compute `value` from detached inputs.
    public static func customFunction(_ name: String, value: Tensor, inputs: [Tensor],
                                      backward: @escaping (Tensor) throws -> [Tensor?]) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: { $0.gradNode != nil }) else { return value.detach() }
        return value.detach().withGradNode(GradNode(name: name, inputs: inputs.map(\.gradNode), backward: backward))
    }
}
