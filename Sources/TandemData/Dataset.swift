import TandemCore

/// A map-style dataset: `count` examples addressed by index, like `torch.utils.data.Dataset`.
public protocol Dataset: Sendable {
    /// Number of examples.
    var count: Int { get }
    /// The example at `index` (input, target). `epoch` lets random transforms differ per
    /// epoch while staying reproducible whatever the number of workers.
    func example(at index: Int, epoch: Int) throws -> (input: Tensor, target: Tensor)
    /// The examples at `indices` collated into a batch: inputs stacked on a new axis 0,
    /// targets likewise. The default stacks `example(at:epoch:)`; datasets may do it faster.
    func batch(_ indices: [Int], epoch: Int) throws -> (input: Tensor, target: Tensor)
}

extension Dataset {
    public func batch(_ indices: [Int], epoch: Int) throws -> (input: Tensor, target: Tensor) {
        try Collate.stack(indices.map { try example(at: $0, epoch: epoch) })
    }
}

/// The default collate step.
public enum Collate {
    /// Stacks inputs and targets of several examples along a new first axis.
    public static func stack(_ examples: [(input: Tensor, target: Tensor)]) throws -> (input: Tensor, target: Tensor) {
        guard !examples.isEmpty else {
            throw TensorError.invalidArgument(op: "collate", message: "cannot collate an empty batch")
        }
        return try Tensor.withNoGrad {
            (try Tensor.stack(examples.map(\.input)), try Tensor.stack(examples.map(\.target)))
        }
    }
}

/// A dataset over in-memory tensors: example i is (inputs[i], targets[i]).
public struct TensorDataset: Dataset {
    public let inputs: Tensor
    public let targets: Tensor

    /// `inputs [N, ...]`, `targets [N, ...]` with the same N.
    public init(inputs: Tensor, targets: Tensor) throws {
        guard inputs.rank >= 1, targets.rank >= 1, inputs.shape[0] == targets.shape[0] else {
            throw TensorError.shapeMismatch(op: "TensorDataset", message: "inputs \(inputs.shape) and targets \(targets.shape) need the same first dimension")
        }
        self.inputs = inputs
        self.targets = targets
    }

    public var count: Int { inputs.shape[0] }

    public func example(at index: Int, epoch: Int) throws -> (input: Tensor, target: Tensor) {
        (try inputs[index], try targets[index])
    }

    public func batch(_ indices: [Int], epoch: Int) throws -> (input: Tensor, target: Tensor) {
        let index = Tensor(int64: indices)
        return (try inputs.indexSelect(axis: 0, index: index), try targets.indexSelect(axis: 0, index: index))
    }
}
