import ArgumentParser
import Foundation
import TandemCore
import TandemData

/// `tandem demo`: a short single-process training run of a 784-128-10 MLP on the vendored
/// MNIST files, written directly against the tensor core (no nn module yet).
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Train a small MLP on MNIST for a few hundred steps and report test accuracy.")

    @Option(help: "Folder with the MNIST IDX files.") var dataDir: String = "Data/mnist"
    @Option(help: "Training steps.") var steps: Int = 600
    @Option(help: "Batch size.") var batchSize: Int = 64
    @Option(help: "Learning rate (plain SGD).") var lr: Double = 0.1
    @Option(help: "Intra-op threads (default: TANDEM_NUM_THREADS or all cores).") var threads: Int?
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Flag(help: "Print one final JSON object.") var json = false

    func validate() throws {
        guard steps > 0 else { throw ValidationError("--steps must be positive") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be a positive number") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        if let threads { Tandem.setNumThreads(threads) }
        let train = try MNIST(folder: dataDir, train: true)
        let test = try MNIST(folder: dataDir, train: false)
        let g = Generator(seed: seed)
        func linear(_ inputs: Int, _ outputs: Int) -> (Tensor, Tensor) {
            let bound = 1 / Double(inputs).squareRoot()
            return (Tensor.uniform([outputs, inputs], low: -bound, high: bound, generator: g).requiringGrad(),
                    Tensor.uniform([outputs], low: -bound, high: bound, generator: g).requiringGrad())
        }
        var (w1, b1) = linear(784, 128)
        var (w2, b2) = linear(128, 10)
        func forward(_ x: Tensor) throws -> Tensor {
            let h = try Tensor.linear(x.reshape([-1, 784]), weight: w1, bias: b1).relu()
            return try Tensor.linear(h, weight: w2, bias: b2)
        }

        let trainImages = try train.normalizedImages(0..<train.count)
        let order = Tensor.randperm(train.count, generator: g).toIntArray()
        let start = Date()
        var lastLoss = 0.0
        for step in 0..<steps {
            let first = (step * batchSize) % (train.count - batchSize)
            let index = Tensor(int64: Array(order[first..<(first + batchSize)]))
            let images = try trainImages.indexSelect(axis: 0, index: index)
            let labels = try train.labels.indexSelect(axis: 0, index: index)
            let logits = try forward(images)
            let loss = try -(logits.logSoftmax(axis: 1) * Tensor.oneHot(labels, numClasses: 10)).sum(axes: [1]).mean()
            try loss.backward()
            func updated(_ p: Tensor) throws -> Tensor { try (p.detach() - lr * p.grad!).requiringGrad() }
            (w1, b1, w2, b2) = (try updated(w1), try updated(b1), try updated(w2), try updated(b2))
            lastLoss = try loss.item()
            if !json && (step + 1) % 100 == 0 {
                print(String(format: "step %4d  loss %.4f", step + 1, lastLoss))
            }
        }
        let seconds = Date().timeIntervalSince(start)
        let correct = try Tensor.withNoGrad { () -> Int in
            var total = 0
            for lo in stride(from: 0, to: test.count, by: 1000) {
                let logits = try forward(test.normalizedImages(lo..<Swift.min(lo + 1000, test.count)))
                let labels = try test.labels.narrow(axis: 0, start: lo, length: Swift.min(1000, test.count - lo))
                total += try logits.argmax(axis: 1).eq(labels).toIntArray().reduce(0, +)
            }
            return total
        }
        let accuracy = Double(correct) / Double(test.count)
        let rate = Double(steps * batchSize) / seconds
        if json {
            print("{\"model\":\"mlp\",\"dataset\":\"mnist\",\"steps\":\(steps),\"final_loss\":\(lastLoss),\"test_accuracy\":\(accuracy),\"train_images_per_second\":\(Int(rate)),\"wall_seconds\":\(String(format: "%.2f", seconds))}")
        } else {
            print(String(format: "test accuracy %.4f  (%d steps, %.0f images/s, %.1f s)", accuracy, steps, rate, seconds))
        }
    }
}
