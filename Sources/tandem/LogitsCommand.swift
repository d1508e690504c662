import ArgumentParser
import Foundation
import TandemModels
import TandemNN

/// `tandem logits`: runs a Hugging Face checkpoint folder (GPT-2 or LLaMA) on token ids from a
/// safetensors file and writes the logits, so interop with transformers can be checked without
/// writing Swift.
struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "Logits of a Hugging Face GPT-2 or LLaMA checkpoint folder for the token ids in a safetensors file.")

    @Option(help: "A folder with config.json and model.safetensors (transformers' save_pretrained, or `tandem train --out`'s hf/).")
    var weights: String
    @Option(help: "A safetensors file holding int64 token ids [batch, length] under the key input_ids.") var input: String
    @Option(help: "Where to write the float32 logits [batch, length, vocab] under the key logits.") var out: String

    func run() throws {
        let model = try HuggingFace.load(directory: weights)
        model.eval()
        let file = try SafeTensors.load(path: input)
        guard let ids = file.tensors["input_ids"] else {
            throw ValidationError("\(input) has no tensor 'input_ids' (keys: \(file.order.joined(separator: ", ")))")
        }
        guard ids.rank == 2, ids.dtype == .int64 else {
            throw ValidationError("input_ids must be int64 [batch, length], got \(ids.dtype) \(ids.shape)")
        }
        let logits = try Tensor.withNoGrad { try model(ids) }
        try SafeTensors.save([("logits", logits.to(.float32))], metadata: ["format": "pt"], to: out)
        print("logits \(logits.shape) → \(out)")
    }
}
