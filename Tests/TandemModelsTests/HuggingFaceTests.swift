import Foundation
import Testing
@testable import TandemModels
import TandemNN
import TandemTestSupport

/// Folders written by transformers' `save_pretrained` (scripts/make_hf_fixtures.py, tiny configs,
/// random weights): Tandem reads them and gives transformers' logits, and writes folders with the
/// same tensors and config values (scripts/check_hf_roundtrip.py loads them in transformers).
@Suite struct HuggingFaceTests {
    static func folder(_ name: String) -> String {
        Golden.folder.replacingOccurrences(of: "/Fixtures/golden", with: "/Fixtures/hf/") + name
    }

    @Test(arguments: ["gpt2-tiny", "llama-tiny"]) func logitsEqualTransformers(name: String) throws {
        let model = try HuggingFace.load(directory: Self.folder(name))
        model.eval()
        let reference = try SafeTensors.load(path: Self.folder(name) + "/reference.safetensors")
        let ids = try reference.tensor("input_ids")
        let logits = try Tensor.withNoGrad { try model(ids) }
        // transformers' float32 logits are 8e-7 from float64 ones; ours are within a few times that.
        #expect(try reference.mismatch(logits, "logits_f64", rtol: 0, atol: 5e-6) == nil)
        #expect(try reference.mismatch(logits, "logits", rtol: 0, atol: 5e-6) == nil)
    }

    /// Saving writes the same tensors (the tied `lm_head` left out, as transformers does) and the
    /// same configuration; the folder loads back to the same logits.
    @Test(arguments: ["gpt2-tiny", "llama-tiny"]) func savesWhatTransformersSaved(name: String) throws {
        let source = Self.folder(name)
        let model = try HuggingFace.load(directory: source)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("hf-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        try HuggingFace.save(model, to: out)
        let original = try SafeTensors.load(path: source + "/model.safetensors"), saved = try SafeTensors.load(path: out + "/model.safetensors")
        #expect(Set(original.tensors.keys) == Set(saved.tensors.keys))
        for (key, tensor) in original.tensors {
            #expect(saved.tensors[key]?.shape == tensor.shape && saved.tensors[key]?.toDoubleArray() == tensor.toDoubleArray(), "\(key)")
        }
        #expect(saved.metadata["format"] == "pt")
        func config(_ folder: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as? [String: Any])
        }
        let (a, b) = (try config(source), try config(out))
        let keys = name.hasPrefix("gpt2")
            ? ["model_type", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "layer_norm_epsilon", "tie_word_embeddings", "activation_function"]
            : ["model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "rms_norm_eps", "tie_word_embeddings", "hidden_act", "head_dim"]
        for key in keys { #expect("\(a[key] ?? "nil")" == "\(b[key] ?? "nil")", "\(key)") }
        let reloaded = try HuggingFace.load(directory: out)
        let ids = try SafeTensors.load(path: source + "/reference.safetensors").tensor("input_ids")
        let (x, y) = try Tensor.withNoGrad { (try model(ids), try reloaded(ids)) }
        #expect(x.toDoubleArray() == y.toDoubleArray())
    }

    @Test func badFoldersAreTypedErrors() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("hf-bad-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        #expect(throws: HuggingFace.Error.self) { try HuggingFace.load(directory: out) }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.folder("gpt2-tiny") + "/model.safetensors", toPath: out + "/model.safetensors")
        try #"{"model_type": "bert"}"#.write(toFile: out + "/config.json", atomically: true, encoding: .utf8)
        #expect(throws: HuggingFace.Error.self) { try HuggingFace.load(directory: out) }
        // The GPT-2 weights under a config with another width.
        let config = try String(contentsOfFile: Self.folder("gpt2-tiny") + "/config.json", encoding: .utf8)
        try config.replacingOccurrences(of: "\"n_embd\": 32", with: "\"n_embd\": 48").write(toFile: out + "/config.json", atomically: true, encoding: .utf8)
        do {
            _ = try HuggingFace.load(directory: out)
            Issue.record("a checkpoint that does not fit its config loaded")
        } catch let error as HuggingFace.Error {
            #expect("\(error)".contains("does not fit"))
        }
        try "not json".write(toFile: out + "/config.json", atomically: true, encoding: .utf8)
        #expect(throws: HuggingFace.Error.self) { try HuggingFace.load(directory: out) }
    }
}
