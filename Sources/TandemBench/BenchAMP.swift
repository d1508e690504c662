import ArgumentParser
import Foundation
import TandemTrain
import TandemCore
import TandemModels
import TandemNN
import TandemOptim

/// `tandem bench amp`: training throughput in float32 and under autocast (bf16, fp16) for
/// the MNIST ConvNet (batch 64) and a matmul-heavy MLP (784 → 1024 → 1024 → 1024 → 10,
/// batch 256), plus the MLP's GEMM alone. The same cases run in PyTorch with
/// Benchmarks/pytorch/amp.py. Synthetic data: this measures compute, not data loading.
struct BenchAMP: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "amp", abstract: "Time training steps with and without autocast.")

    @Option(help: "Intra-op threads.") var threads: Int = 2
    @Option(help: "Minimum seconds of timed runs per case.") var seconds: Double = 3
    @Option(help: "Comma-separated precisions: fp32, bf16, fp16.") var amp: String = "fp32,bf16,fp16"
    @Option(help: "Only cases whose name contains this text.") var filter: String?

    func run() throws {
        Tandem.setNumThreads(threads)
        let g = Generator(seed: 0)
        for precision in amp.split(separator: ",").map(String.init) {
            let dtype: DType? = switch precision {
            case "bf16": .bfloat16
            case "fp16": .float16
            case "fp32": nil
            default: throw ValidationError("unknown precision '\(precision)'; use fp32, bf16, fp16")
            }
            func forward<R>(_ body: () throws -> R) throws -> R {
                guard let dtype else { return try body() }
                return try autocast(dtype: dtype, body)
            }
            var cases: [(String, Int, () throws -> Void)] = []
            // The MLP's largest GEMM, [256, 1024] · [1024, 1024], forward only.
            let a = Tensor.randn([256, 1024], generator: g), w = Tensor.randn([1024, 1024], generator: g)
            cases.append(("gemm_256x1024x1024", 256, { _ = try forward { try Tensor.matmul(a, w) } }))
            for (name, batch, model, input) in [
                ("convnet_train_step_b64", 64, ConvNet(generator: g) as any Module, Tensor.randn([64, 1, 28, 28], generator: g)),
                ("mlp4x1024_train_step_b256", 256,
                 Sequential(Flatten(), Linear(784, 1024, generator: g), ReLU(), Linear(1024, 1024, generator: g), ReLU(),
                            Linear(1024, 1024, generator: g), ReLU(), Linear(1024, 10, generator: g)) as any Module,
                 Tensor.randn([256, 1, 28, 28], generator: g)),
            ] {
                let labels = Tensor(int64: (0..<batch).map { $0 % 10 })
                let optimizer = try SGD(model.parameters(), lr: 0.001, momentum: 0.9)
                let scaler = try GradScaler(enabled: dtype == .float16)
                cases.append((name, batch, {
                    optimizer.zeroGrad()
                    let loss = try forward { try Tensor.crossEntropy(model(input), target: labels) }
                    try scaler.scale(loss).backward()
                    try scaler.step(optimizer)
                    scaler.update()
                }))
            }
            for (name, batch, body) in cases where filter.map({ name.contains($0) }) ?? true {
                let ms = try BenchCases.time(seconds: seconds, body)
                let line: [String: Any] = ["framework": "tandem", "case": name, "amp": precision, "threads": threads,
                                           "ms": (ms * 1000).rounded() / 1000,
                                           "images_per_second": (Double(batch) / ms * 1000 * 10).rounded() / 10]
                try JSONValues.printLine(line)
                fflush(nil)
            }
        }
    }
}
