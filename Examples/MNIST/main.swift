// MNIST on one process: the seed's single-process program (train.py) in Swift.
// The seed's ConvNet, CrossEntropyLoss and SGD, an explicit training loop, the loss printed
// every 100 steps, test accuracy after each epoch, and the weights saved as safetensors with
// PyTorch's names (`safetensors.torch.load_file` loads them into the seed's nn.Module).
//
//   swift build -c release
//   .build/release/mnist --epochs 2                       # Data/mnist, float32
//   .build/release/mnist --epochs 1 --amp bf16            # forward pass under autocast(bfloat16)
//   .build/release/mnist --max-steps 50 --amp fp16        # float16 with a GradScaler; a quick run
//
// TANDEM_NUM_THREADS=N sets the number of threads (default: every core).
import ArgumentParser
import Foundation
import TandemData
import TandemModels
import TandemNN
import TandemOptim

/// `--amp bf16|fp16`: the dtype of the autocast region.
enum Precision: String, ExpressibleByArgument {
    case bf16, fp16
    var dtype: DType { self == .bf16 ? .bfloat16 : .float16 }
}

struct MNISTExample: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mnist", abstract: "Train the seed's MNIST ConvNet on one process.")

    @Option(name: [.short, .long], help: "Number of epochs.") var epochs = 2
    @Option(name: [.short, .long], help: "Batch size.") var batchSize = 64
    @Option(help: "Learning rate of SGD (momentum 0.9).") var lr = 0.01
    @Option(help: "Folder holding the MNIST IDX files.") var dataDir = "Data/mnist"
    @Option(help: "Mixed precision: bf16 or fp16.") var amp: Precision?
    @Option(help: "Stop after this many steps (for quick runs).") var maxSteps: Int?
    @Option(help: "Print the loss every this many steps.") var logEvery = 100
    @Option(help: "Where to save the trained weights.") var out = "mnist.safetensors"

    func run() throws {
        let model = ConvNet()
        let criterion = CrossEntropyLoss()
        let optimizer = try SGD(model.parameters(), lr: lr, momentum: 0.9)
        // Loss scaling is for float16 only; a disabled scaler passes everything through.
        let scaler = try GradScaler(enabled: amp == .fp16)

        let trainDataset = try MNIST(folder: dataDir, train: true)   // ToTensor + Normalize
        let testDataset = try MNIST(folder: dataDir, train: false)
        let trainLoader = try DataLoader(trainDataset, batchSize: batchSize, shuffle: true)
        let testLoader = try DataLoader(testDataset, batchSize: 1000)

        let start = Date()
        let totalStep = trainLoader.count
        var step = 0, images = 0, trainSeconds = 0.0   // images/s counts the training loop only
        for epoch in 0..<epochs {
            model.train()
            trainLoader.setEpoch(epoch)   // a new shuffle every epoch
            let batches = trainLoader.makeIterator()
            let epochStart = Date()
            var i = 0
            while let (inputs, labels) = try batches.next() {
                // Forward pass (under autocast when --amp is given).
                let loss = try autocast(dtype: amp?.dtype ?? .bfloat16, enabled: amp != nil) {
                    try criterion(model(inputs), labels)
                }
                // Backward and optimize.
                optimizer.zeroGrad()
                try scaler.scale(loss).backward()
                try scaler.step(optimizer)    // skipped when a float16 gradient overflowed
                scaler.update()
                i += 1
                step += 1
                images += inputs.shape[0]
                if i % logEvery == 0 {
                    print(String(format: "Epoch [%d/%d], Step [%d/%d], Loss: %.4f", epoch + 1, epochs, i, totalStep, try loss.item()))
                }
                if step == maxSteps { break }
            }
            trainSeconds += Date().timeIntervalSince(epochStart)
            let accuracy = try evaluate(model, testLoader)
            print(String(format: "Evaluate accuracy is %.4f", accuracy))
            if step == maxSteps { break }
        }
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "Training complete in: %.1f s (%d steps, %.0f train images/s)", seconds, step, Double(images) / trainSeconds))
        try SafeTensors.save(model.stateDict(), metadata: ["format": "pt"], to: out)
        print("saved \(out)")
    }

    /// Test accuracy in evaluation mode (BatchNorm uses its running statistics), without gradients.
    func evaluate(_ model: ConvNet, _ loader: DataLoader<MNIST>) throws -> Double {
        model.eval()
        defer { model.train() }
        var correct = 0, size = 0
        try Tensor.withNoGrad {
            try loader.forEach { inputs, labels in
                let outputs = try autocast(dtype: amp?.dtype ?? .bfloat16, enabled: amp != nil) { try model(inputs) }
                correct += try Int(outputs.argmax(axis: 1).eq(labels).to(.float32).sum().item())
                size += labels.shape[0]
            }
        }
        return Double(correct) / Double(size)
    }
}

MNISTExample.main()
