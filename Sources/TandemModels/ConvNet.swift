import TandemNN

/// The seed's MNIST ConvNet (pytorch-tutorial CNN):
/// `layer1 = Conv2d(1,16,5,p2)–BatchNorm2d(16)–ReLU–MaxPool2d(2)`,
/// `layer2 = Conv2d(16,32,5,p2)–BatchNorm2d(32)–ReLU–MaxPool2d(2)`, `fc = Linear(7·7·32, 10)`.
/// Input `[N, 1, 28, 28]` → logits `[N, numClasses]`. State-dict names match PyTorch's.
public final class ConvNet: Module {
    public let layer1: ConvBlocks
    public let layer2: ConvBlocks
    public let fc: Linear
    public var isTraining = true

    public init(numClasses: Int = 10, generator: Generator = .default) {
        layer1 = ConvBlocks(Conv2d(1, 16, kernelSize: 5, padding: 2, generator: generator), BatchNorm2d(16), ReLU(),
                            MaxPool2d(kernelSize: 2))
        layer2 = ConvBlocks(Conv2d(16, 32, kernelSize: 5, padding: 2, generator: generator), BatchNorm2d(32), ReLU(),
                            MaxPool2d(kernelSize: 2))
        fc = Linear(7 * 7 * 32, numClasses, generator: generator)
    }

    public var children: [(String, any Module)] { [("layer1", layer1), ("layer2", layer2), ("fc", fc)] }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank == 4, input.shape[1] == 1, input.shape[2] == 28, input.shape[3] == 28 else {
            throw TensorError.shapeMismatch(op: "ConvNet", message: "expects images [N, 1, 28, 28], got \(input.shape)")
        }
        // Both layers' blocks run as one fused operation where they can.
        let features = try ConvBlocks.chain([layer1, layer2], input)
        return try fc(features.reshape([features.shape[0], -1]))
    }
}

/// The seed's CIFAR-10 "ToyModel": `conv1 = Conv2d(3,6,5)`, pool, `conv2 = Conv2d(6,16,5)`, pool,
/// `fc1 = Linear(400,120)`, `fc2 = Linear(120,84)`, `fc3 = Linear(84,10)` with ReLU between.
/// Input `[N, 3, 32, 32]` → logits `[N, 10]`.
public final class CIFARToyModel: Module {
    public let conv1: Conv2d, conv2: Conv2d
    public let pool = MaxPool2d(kernelSize: 2)
    public let fc1: Linear, fc2: Linear, fc3: Linear
    public var isTraining = true

    public init(generator: Generator = .default) {
        conv1 = Conv2d(3, 6, kernelSize: 5, generator: generator)
        conv2 = Conv2d(6, 16, kernelSize: 5, generator: generator)
        fc1 = Linear(16 * 5 * 5, 120, generator: generator)
        fc2 = Linear(120, 84, generator: generator)
        fc3 = Linear(84, 10, generator: generator)
    }

    public var children: [(String, any Module)] {
        [("conv1", conv1), ("pool", pool), ("conv2", conv2), ("fc1", fc1), ("fc2", fc2), ("fc3", fc3)]
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank == 4, input.shape[1] == 3, input.shape[2] == 32, input.shape[3] == 32 else {
            throw TensorError.shapeMismatch(op: "CIFARToyModel", message: "expects images [N, 3, 32, 32], got \(input.shape)")
        }
        var x = try pool(conv1(input).relu())
        x = try pool(conv2(x).relu())
        x = try x.reshape([x.shape[0], -1])
        return try fc3(fc2(fc1(x).relu()).relu())
    }
}
