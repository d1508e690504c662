import ArgumentParser
import Foundation
import TandemModels
import TandemNN

/// `tandem flops`: the seed's per-layer FLOPs of a Transformer block, `24·D²·L + 4·D·L²`
/// (projections and MLP, then attention scores and mixing), and its long-sequence test `L > 6D`
/// (the attention term outgrows the linear one, which is where Mamba-style models pay off).
/// It also runs one real GPT-2 block (width D, heads of 64 channels, batch 1, causal) and
/// reports the FLOPs its matrix products executed (`FlopCounter`), split into the linear
/// layers and attention.
struct FlopsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flops", abstract: "FLOPs of one Transformer layer for model width D and sequence length L.")

    @Option(name: .customLong("d"), help: "Model width D.") var width: Int
    @Option(name: .customLong("l"), help: "Sequence length L.") var length: Int
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(inversion: .prefixedNo, help: "Also run one GPT-2 block and count the FLOPs its products execute.") var measure = true

    func validate() throws {
        guard width > 0, length > 0 else { throw ValidationError("--d and --l must be positive") }
    }

    func run() throws {
        let d = Double(width), l = Double(length)
        let linear = 24 * d * d * l, attention = 4 * d * l * l
        let long = length > 6 * width
        var measured: (linear: Int, attention: Int)?
        if measure { measured = try measureBlock() }
        if json {
            var object: [String: Any] = ["d": width, "l": length, "linear_flops": linear, "attention_flops": attention,
                                         "total_flops": linear + attention, "long_sequence": long]
            if let measured {
                object["measured_linear_flops"] = measured.linear
                object["measured_attention_flops"] = measured.attention
                object["measured_total_flops"] = measured.linear + measured.attention
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print(String(format: "D = %d, L = %d", width, length))
        print(String(format: "  24·D²·L (projections + MLP): %.4g FLOPs", linear))
        print(String(format: "  4·D·L²  (attention):         %.4g FLOPs", attention))
        print(String(format: "  total per layer:             %.4g FLOPs (attention share %.1f%%)", linear + attention,
                     100 * attention / (linear + attention)))
        print("  L > 6D? \(long ? "yes" : "no") (6D = \(6 * width)): "
              + (long ? "a long-sequence task; attention dominates" : "not a long-sequence task; the linear layers dominate"))
        if let measured {
            let total = Double(measured.linear + measured.attention)
            print(String(format: "  measured, one GPT-2 block forward (causal, heads of %d): linear %.4g (%.3f× the formula), attention %.4g (%.3f×), total %.4g (%.3f×); attention share %.1f%%",
                         headDim, Double(measured.linear), Double(measured.linear) / linear, Double(measured.attention),
                         Double(measured.attention) / attention, total, total / (linear + attention), 100 * Double(measured.attention) / total))
            print("  (causal attention skips the key blocks after each query block, so it runs about half of 4·D·L²)")
        }
    }

    private var headDim: Int { width % 64 == 0 ? 64 : width }

    /// The FLOPs of one GPT-2 block's products on `[1, L, D]`: the linear layers (c_attn, c_proj,
    /// c_fc, mlp.c_proj) and the attention kernel's tile products.
    private func measureBlock() throws -> (linear: Int, attention: Int) {
        var config = GPT2Config()
        (config.nEmbd, config.nHead, config.nLayer) = (width, width / headDim, 1)
        let block = GPT2Block(config, generator: Generator(seed: 0))
        let x = Tensor.randn([1, length, width], generator: Generator(seed: 1))
        let total = try Tensor.withNoGrad { try FlopCounter.count { try block(x) }.flops }
        let q = Tensor.randn([1, config.nHead, length, headDim], generator: Generator(seed: 2))
        let attention = try Tensor.withNoGrad {
            try FlopCounter.count { try Tensor.scaledDotProductAttention(q, q, q, isCausal: true) }.flops
        }
        return (total - attention, attention)
    }
}
