import TandemNN

/// Builds models by the names the CLI uses.
public enum ModelZoo {
    /// Names `tandem train --model` accepts.
    public static let names = ["convnet", "cifar-cnn", "kan", "mambaout-mini"]

    /// The dataset each model is made for.
    public static func defaultDataset(for model: String) -> String? {
        ["convnet": "mnist", "cifar-cnn": "cifar10", "kan": "mnist", "mambaout-mini": "mnist"][model]
    }

    /// A freshly initialised model, or nil for an unknown name.
    public static func make(_ name: String, generator: Generator) -> (any Module)? {
        switch name {
        case "convnet": return ConvNet(generator: generator)
        case "cifar-cnn": return CIFARToyModel(generator: generator)
        // MNIST pixels normalised by mean 0.1307, std 0.3081 lie in [-0.42, 2.82]: the grid covers that.
        case "kan": return KAN([784, 64, 10], gridRange: -1...3, generator: generator)
        case "mambaout-mini": return MambaOut(.mini, inChannels: 1, numClasses: 10, generator: generator)
        default: return nil
        }
    }
}
