import ArgumentParser
import Foundation
import TandemCore
import TandemModels
import TandemNN
import TandemOptim
import TandemTrain

/// `tandem bench gpt`: GPT-2 training throughput (nanoGPT's character configuration at byte
/// level: 6 layers, 6 heads, width 384, context 256, batch 8; AdamW lr 1e-3, weight decay 0.1,
/// clipping at 1) and cached greedy generation (a 16-token prompt, 256 new tokens). The same
/// model and steps run in PyTorch with Benchmarks/pytorch/gpt_train.py (`--generate` for decoding).
struct BenchGPT: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gpt", abstract: "Time GPT training steps and cached generation.")

    @Option(help: "Comma-separated thread counts.") var threads: String = "1,2"
    @Option(help: "Blocks.") var layers: Int = 6
    @Option(help: "Heads.") var heads: Int = 6
    @Option(help: "Width.") var width: Int = 384
    @Option(help: "Context (tokens per window).") var context: Int = 256
    @Option(help: "Windows per step.") var batchSize: Int = 8
    @Option(help: "Timed training steps per thread count.") var steps: Int = 6
    @Option(help: "Untimed steps first.") var warmupSteps: Int = 2
    @Flag(help: "Time cached generation instead of training.") var generate = false
    @Flag(help: "Recompute each block in the backward pass.") var checkpointActivations = false

    func run() throws {
        for n in threads.split(separator: ",").compactMap({ Int($0) }) {
            Tandem.setNumThreads(n)
            var config = GPT2Config()
            (config.nLayer, config.nHead, config.nEmbd, config.nPositions) = (layers, heads, width, Swift.max(context, generate ? 272 : 0))
            let model = GPT2LMHeadModel(config, generator: Generator(seed: 0))
            let parameters = model.parameters().reduce(0) { $0 + $1.value.count }
            var line: [String: Any] = ["framework": "tandem", "threads": n, "parameters": parameters]
            if generate {
                model.eval()
                let prompt = Array((0..<16).map { ($0 * 37 + 11) % 256 })
                _ = try model.generate(prompt: prompt, count: 8, temperature: 0)
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try model.generate(prompt: prompt, count: 256, temperature: 0)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                line["case"] = "gpt_generate_l\(layers)_h\(heads)_d\(width)_prompt16_new256"
                line["tokens_per_second"] = (256 / seconds * 10).rounded() / 10
            } else {
                model.checkpointActivations = checkpointActivations
                let g = Generator(seed: 1)
                let optimizer = try Adam.adamW(model.parameters(), lr: 1e-3, weightDecay: 0.1)
                let tokens = Tensor(int64: (0..<batchSize * (context + 1)).map { _ in Int(g.next() % 256) }, shape: [batchSize, context + 1])
                let input = try tokens.narrow(axis: 1, start: 0, length: context).contiguous()
                let target = try tokens.narrow(axis: 1, start: 1, length: context).contiguous().reshape([-1])
                var samples: [Double] = [], phases: [[Double]] = []
                func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }
                for step in 0..<(warmupSteps + steps) {
                    let start = now()
                    optimizer.zeroGrad()
                    let loss = try Tensor.crossEntropy(model(input).reshape([-1, 256]), target: target)
                    let forwardEnd = now()
                    try loss.backward()
                    let backwardEnd = now()
                    try ClipGrad.clipGradNorm(model.parameters(), maxNorm: 1)
                    try optimizer.step()
                    if step >= warmupSteps {
                        samples.append(now() - start)
                        phases.append([forwardEnd - start, backwardEnd - forwardEnd, now() - backwardEnd])
                    }
                }
                let middle = phases.sorted { $0.reduce(0, +) < $1.reduce(0, +) }[phases.count / 2]
                line["forward_backward_optimizer_ms"] = middle.map { ($0 * 10).rounded() / 10 }
                samples.sort()
                let median = samples[samples.count / 2]
                line["case"] = "gpt_train_l\(layers)_h\(heads)_d\(width)_ctx\(context)_b\(batchSize)" + (checkpointActivations ? "_ckpt" : "")
                line["step_ms_median"] = (median * 10).rounded() / 10
                line["tokens_per_second"] = (Double(batchSize * context) / median * 1000).rounded()
                line["peak_rss_mib"] = (Double(ResourceUsage.peakResidentBytes()) / 1_048_576).rounded()
            }
            let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            fflush(nil)
        }
    }
}
