import ArgumentParser
import Foundation

/// `tandem flops`: the seed's per-layer FLOPs of a Transformer block, `24·D²·L + 4·D·L²`
/// (projections and MLP, then attention scores and mixing), and its long-sequence test `L > 6D`
/// (the attention term outgrows the linear one, which is where Mamba-style models pay off).
struct FlopsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flops", abstract: "FLOPs of one Transformer layer for model width D and sequence length L.")

    @Option(name: .customLong("d"), help: "Model width D.") var width: Int
    @Option(name: .customLong("l"), help: "Sequence length L.") var length: Int
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard width > 0, length > 0 else { throw ValidationError("--d and --l must be positive") }
    }

    func run() throws {
        let d = Double(width), l = Double(length)
        let linear = 24 * d * d * l, attention = 4 * d * l * l
        let long = length > 6 * width
        if json {
            print("{\"d\":\(width),\"l\":\(length),\"linear_flops\":\(linear),\"attention_flops\":\(attention),\"total_flops\":\(linear + attention),\"long_sequence\":\(long)}")
        } else {
            print(String(format: "D = %d, L = %d", width, length))
            print(String(format: "  24·D²·L (projections + MLP): %.4g FLOPs", linear))
            print(String(format: "  4·D·L²  (attention):         %.4g FLOPs", attention))
            print(String(format: "  total per layer:             %.4g FLOPs (attention share %.1f%%)", linear + attention,
                         100 * attention / (linear + attention)))
            print("  L > 6D? \(long ? "yes" : "no") (6D = \(6 * width)): "
                  + (long ? "a long-sequence task; attention dominates" : "not a long-sequence task; the linear layers dominate"))
        }
    }
}
