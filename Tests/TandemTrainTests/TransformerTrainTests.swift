import Foundation
import Testing
import TandemCore
import TandemModels

/// `tandem train --model gpt-lm|llama-lm` through the real executable: DDP with gradient
/// accumulation trains the weights of one process at the same global batch; the run leaves a
/// Hugging Face folder that `tandem generate` and `tandem logits` read.
@Suite(.serialized) struct TransformerTrainTests {
    /// A small UTF-8 corpus file in a fresh folder.
    static func corpus() throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-gpt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let text = (0..<120).map { "Fortune \($0 % 17): the quick brown fox \($0 % 5 == 0 ? "naps" : "jumps") over \($0 % 3) lazy dogs.\n" }.joined()
        try text.write(toFile: folder + "/corpus.txt", atomically: true, encoding: .utf8)
        return folder
    }

    /// A tiny byte-level LLaMA (2 layers, width 32).
    static func tinyLlama() -> LlamaForCausalLM {
        var config = LlamaConfig()
        (config.hiddenSize, config.intermediateSize, config.numHiddenLayers, config.numAttentionHeads, config.numKeyValueHeads) = (32, 48, 2, 4, 2)
        return LlamaForCausalLM(config, generator: Generator(seed: 0))
    }

    static let tiny = ["--layers", "2", "--width", "32", "--heads", "4", "--context", "32", "--seed", "3", "--json", "--log-every", "1"]

    /// 1 process × 8 windows per step against 2 processes × 2 windows × 2 accumulated
    /// micro-batches: the same global batches (one permutation for any world size), the same
    /// mean loss, so the same weights up to float32 rounding in a different summation order.
    @Test(.enabled(if: DistributedTrainTests.tandemExecutable() != nil), arguments: ["gpt-lm", "llama-lm"])
    func ddpWithGradientAccumulationTrainsTheWeightsOfOneProcess(model: String) throws {
        let folder = try Self.corpus()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let common = ["train", "--model", model, "--data-file", folder + "/corpus.txt", "--max-steps", "6"] + Self.tiny
        let one = try DistributedTrainTests.run(common + ["--batch-size", "8", "--out", folder + "/one"])
        #expect(one.status == 0, "\(one.output)")
        let two = try DistributedTrainTests.run(common + ["--batch-size", "2", "--grad-accum", "2", "--nproc-per-node", "2",
                                                          "--out", folder + "/two"])
        #expect(two.status == 0, "\(two.output)")
        let a = try SafeTensors.load(path: folder + "/one/model.safetensors"), b = try SafeTensors.load(path: folder + "/two/model.safetensors")
        #expect(a.order == b.order)
        var worst = 0.0
        for name in a.order {
            guard let x = a.tensors[name], let y = b.tensors[name] else { continue }
            worst = max(worst, zip(x.toDoubleArray(), y.toDoubleArray()).map { abs($0 - $1) }.max() ?? 0)
        }
        #expect(worst <= 1e-5, "largest weight difference \(worst)")
        // The step records of both runs saw the same losses.
        #expect(one.output.contains("\"steps\":6") && two.output.contains("\"grad_accum\":2"))
    }

    /// Checkpointed activations train the same weights; the Hugging Face folder loads into
    /// `tandem logits` and `tandem generate`.
    @Test(.enabled(if: DistributedTrainTests.tandemExecutable() != nil))
    func checkpointedRunLeavesAFolderForGenerateAndLogits() throws {
        let folder = try Self.corpus()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let common = ["train", "--model", "gpt-lm", "--data-file", folder + "/corpus.txt", "--max-steps", "4", "--batch-size", "4"] + Self.tiny
        let plain = try DistributedTrainTests.run(common + ["--out", folder + "/plain"])
        #expect(plain.status == 0, "\(plain.output)")
        let recomputed = try DistributedTrainTests.run(common + ["--checkpoint-activations", "--out", folder + "/recomputed"])
        #expect(recomputed.status == 0, "\(recomputed.output)")
        let a = try SafeTensors.load(path: folder + "/plain/model.safetensors")
        let b = try SafeTensors.load(path: folder + "/recomputed/model.safetensors")
        for name in a.order { #expect(a.tensors[name]?.toDoubleArray() == b.tensors[name]?.toDoubleArray(), "\(name)") }

        let hf = folder + "/plain/hf"
        #expect(FileManager.default.fileExists(atPath: hf + "/config.json"))
        let ids = Tensor(int64: [70, 111, 114, 116, 117, 110, 101], shape: [1, 7])
        try SafeTensors.save([("input_ids", ids)], to: folder + "/ids.safetensors")
        let logits = try DistributedTrainTests.run(["logits", "--weights", hf, "--input", folder + "/ids.safetensors",
                                                    "--out", folder + "/logits.safetensors"])
        #expect(logits.status == 0, "\(logits.output)")
        let written = try #require(try SafeTensors.load(path: folder + "/logits.safetensors").tensors["logits"])
        let model = try HuggingFace.load(directory: hf)
        model.eval()
        let expected = try Tensor.withNoGrad { try model(ids) }
        #expect(written.shape == [1, 7, 256] && written.toDoubleArray() == expected.toDoubleArray())
        let generated = try DistributedTrainTests.run(["generate", "--weights", hf, "--prompt", "Fortune", "--tokens", "20", "--json"])
        #expect(generated.status == 0 && generated.output.contains("\"tokens\":20"), "\(generated.output)")
    }
}
