import ArgumentParser
import Foundation
import TandemCore
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel

/// `tandem bench dataparallel`: one training step (forward, backward, SGD step) of a zoo model
/// on a random batch, plain and under `DataParallel` with each replica count, with the same
/// intra-op thread budget: shows whether splitting the batch across thread groups pays on CPU.
struct BenchDataParallel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataparallel", abstract: "Time a training step plainly and under DataParallel.")

    @Option(help: "Model: convnet or cifar-cnn.") var model: String = "convnet"
    @Option(help: "Global batch size.") var batchSize: Int = 64
    @Option(help: "Comma-separated replica counts (1: the plain model).") var replicas: String = "1,2"
    @Option(help: "Intra-op threads in total (default: all cores).") var threads: Int?
    @Option(help: "Minimum seconds of timed steps per case.") var seconds: Double = 2
    @Flag(help: "Print one JSON object per case.") var json = false

    func validate() throws {
        guard ["convnet", "cifar-cnn"].contains(model) else { throw ValidationError("--model must be convnet or cifar-cnn") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--replicas must list counts ≥ 1, e.g. 1,2") }
    }

    var counts: [Int] { replicas.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        if let threads { Tandem.setNumThreads(threads) }
        let g = Generator(seed: 0)
        let shape = model == "convnet" ? [batchSize, 1, 28, 28] : [batchSize, 3, 32, 32]
        let x = Tensor.randn(shape, generator: g)
        let y = Tensor(int64: (0..<batchSize).map { _ in Int(g.next() % 10) })
        for count in counts {
            let base = ModelZoo.make(model, generator: Generator(seed: 1))!
            let net: any Module = count == 1 ? base
                : try DataParallel(base, replicaCount: count) { ModelZoo.make(model, generator: Generator(seed: 2))! }
            let optimizer = try SGD(net.parameters(), lr: 0.01, momentum: 0.9)
            let ms = try BenchCases.time(seconds: seconds) {
                optimizer.zeroGrad()
                try Tensor.crossEntropy(net(x), target: y).backward()
                try optimizer.step()
            }
            let rate = Double(batchSize) / (ms / 1000)
            if json {
                print("{\"case\":\"train_step\",\"model\":\"\(model)\",\"replicas\":\(count),\"threads\":\(Tandem.numThreads),\"batch\":\(batchSize),"
                    + "\"ms\":\(String(format: "%.4f", ms)),\"images_per_s\":\(String(format: "%.1f", rate))}")
            } else {
                print("\(model) batch \(batchSize), \(Tandem.numThreads) thread(s), \(count == 1 ? "plain" : "DataParallel × \(count)"): "
                    + String(format: "%.3f ms/step, %.0f images/s", ms, rate))
            }
            fflush(nil)
        }
    }
}
