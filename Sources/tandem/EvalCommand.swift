import ArgumentParser
import Foundation
import TandemData
import TandemModels
import TandemNN
import TandemTrain

/// `tandem eval`: evaluates saved weights (Tandem's or PyTorch's safetensors state dict).
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Evaluate saved weights on a test set.")

    @Option(help: "Model: \(ModelZoo.names.joined(separator: ", ")).") var model: ModelChoice = .convnet
    @Option(help: "A safetensors state dict with PyTorch names.") var weights: String
    @Option(help: "Dataset: mnist, cifar10 (default: the model's).") var dataset: DatasetChoice?
    @Option(help: "Dataset folder.") var dataDir: String?
    @Option(help: "Write int64 `predictions` (one per test image) to this safetensors file.") var predictions: String?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard ModelZoo.names.contains(model.rawValue) else {
            throw ValidationError("--model \(model.rawValue) is not a classifier; choose one of \(ModelZoo.names.joined(separator: ", "))")
        }
    }

    func run() throws {
        guard let net = ModelZoo.make(model.rawValue, generator: Generator(seed: 0)) else { return }
        try Checkpoint.loadWeights(path: weights, into: net)
        if let bad = FiniteCheck.firstNonFinite(net.stateDict()) {
            FileHandle.standardError.write(Data("warning: '\(weights)' holds \(bad.name) \(bad.value); the run that wrote it diverged, so these results mean little\n".utf8))
        }
        net.eval()
        let datasetName = dataset?.rawValue ?? ModelZoo.defaultDataset(for: model.rawValue) ?? "mnist"
        var predicted: [Int] = []
        var correct = 0, total = 0
        func run<D: Dataset>(_ data: D) throws {
            try Tensor.withNoGrad {
                try DataLoader(data, batchSize: 1000).forEach { x, y in
                    let p = try net(x).argmax(axis: 1)
                    predicted += p.toIntArray()
                    correct += try p.eq(y).toIntArray().reduce(0, +)
                    total += y.shape[0]
                }
            }
        }
        if datasetName == "cifar10" {
            try run(CIFAR10(folder: dataDir ?? "Data/cifar-10-batches-bin", train: false))
        } else {
            try run(MNIST(folder: dataDir ?? "Data/mnist", train: false))
        }
        if let predictions {
            try SafeTensors.save([("predictions", Tensor(int64: predicted))], to: predictions)
        }
        let accuracy = Double(correct) / Double(Swift.max(total, 1))
        if json {
            print("{\"model\":\"\(model.rawValue)\",\"dataset\":\"\(datasetName)\",\"images\":\(total),\"test_accuracy\":\(accuracy)}")
        } else {
            print(String(format: "test accuracy %.4f on %d images", accuracy, total))
        }
    }
}
