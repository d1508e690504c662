import TandemNN

/// Builds models by the names the CLI uses.
public enum ModelZoo {
    /// Names `tandem train --model` accepts.
    public static let names = ["convnet", "cifar-cnn"]

    /// The dataset each model is made for.
    public static func defaultDataset(for model: String) -> String? {
        ["convnet": "mnist", "cifar-cnn": "cifar10"][model]
    }

    /// A freshly initialised model, or nil for an unknown name.
    public static func make(_ name: String, generator: Generator) -> (any Module)? {
        switch name {
        case "convnet": return ConvNet(generator: generator)
        case "cifar-cnn": return CIFARToyModel(generator: generator)
        default: return nil
        }
    }
}
