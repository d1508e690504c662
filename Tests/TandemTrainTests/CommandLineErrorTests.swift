import Foundation
import Testing
import TandemCore
import TandemModels

/// Bad flags and bad files given to the `tandem` commands built for DDP, mixed precision, the
/// language model and the benchmarks: a non-zero exit with a message that says what to fix,
/// and no hang (each run is bounded by `DistributedTrainTests.run`'s time limit).
@Suite struct CommandLineErrorTests {
    static let built = DistributedTrainTests.tandemExecutable() != nil

    /// Runs `tandem arguments` and checks that it fails, naming `expected`.
    func expectFailure(_ arguments: [String], mentioning expected: String,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try DistributedTrainTests.run(arguments, limit: 30)
        #expect(result.status != 0, "tandem \(arguments.joined(separator: " ")) succeeded", sourceLocation: sourceLocation)
        #expect(result.output.contains(expected), "\(result.output)", sourceLocation: sourceLocation)
    }

    @Test(.enabled(if: built, "the tandem executable is not built")) func badFlags() throws {
        try expectFailure(["train", "--backend", "mpi", "--nproc-per-node", "2"], mentioning: "mpirun -np 2 tandem train --backend mpi")
        try expectFailure(["train", "--backend", "nccl"], mentioning: "Please provide one of 'gloo' and 'mpi'")
        try expectFailure(["train", "--amp", "fp8"], mentioning: "Please provide one of 'bf16' and 'fp16'")
        try expectFailure(["train", "--model", "ctc-digits", "--dataset", "mnist-strings", "--train-strings", "0"],
                          mentioning: "--train-strings and --test-strings must be positive")
        try expectFailure(["bench", "allreduce", "--sizes", "3XB"], mentioning: "bad size '3XB'")
        // Negative numbers reach the checks (they read as "Missing value" before).
        try expectFailure(["train", "--batch-size", "-1"], mentioning: "--batch-size must be positive")
        try expectFailure(["run", "--stop-grace", "-1", "--", "/bin/true"], mentioning: "--stop-grace must be a number of seconds")
        try expectFailure(["run", "--stop-grace", "nan", "--", "/bin/true"], mentioning: "--stop-grace must be a number of seconds")
        try expectFailure(["train", "--timeout", "0"], mentioning: "--timeout must be a positive number of seconds")
    }

    /// `--out` on a file or somewhere that cannot be created: a message, not Foundation's error text.
    @Test(.enabled(if: built, "the tandem executable is not built")) func unusableOutputFolders() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-out-\(UUID().uuidString)").path
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        try expectFailure(["train", "--max-steps", "1", "--out", file], mentioning: "is a file; give the path of a folder")
        try expectFailure(["train", "--max-steps", "1", "--out", file + "/below"], mentioning: "cannot create the --out folder")
    }

    @Test(.enabled(if: built, "the tandem executable is not built")) func missingAndCorruptFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let garbage = folder + "/model.safetensors"
        try Data("garbage bytes, not safetensors".utf8).write(to: URL(fileURLWithPath: garbage))
        try expectFailure(["generate", "--weights", folder + "/missing.safetensors"], mentioning: "missing.safetensors")
        try expectFailure(["generate", "--weights", garbage], mentioning: "is corrupt or not a safetensors file")
        try expectFailure(["train", "--model", "mamba2-lm", "--dataset", "text", "--data-file", folder + "/no-corpus.txt", "--max-steps", "1"],
                          mentioning: "not found")
        try expectFailure(["train", "--model", "mamba2-lm", "--dataset", "text", "--data-file", garbage, "--max-steps", "1"],
                          mentioning: "use a longer text or a shorter --context")
    }

    /// The Transformer flags and files: bad values name the flag; a Hugging Face folder that is
    /// missing, corrupt or does not fit its config, and token ids of the wrong key or dtype, name
    /// what to fix.
    @Test(.enabled(if: built, "the tandem executable is not built")) func transformerFlagsAndFolders() throws {
        try expectFailure(["train", "--model", "gpt-lm", "--grad-accum", "0"], mentioning: "--grad-accum must be at least 1")
        try expectFailure(["train", "--model", "mamba2-lm", "--checkpoint-activations"], mentioning: "--checkpoint-activations is for --model gpt-lm and llama-lm")
        try expectFailure(["train", "--model", "gpt-lm", "--width", "100", "--heads", "6"], mentioning: "must be a multiple of --heads")
        try expectFailure(["train", "--model", "convnet", "--layers", "2"], mentioning: "--layers is for language models")
        try expectFailure(["train", "--model", "gpt-lm", "--clip-grad", "0"], mentioning: "--clip-grad must be a positive number")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-hf-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let ids = folder + "/ids.safetensors"
        try SafeTensors.save([("tokens", Tensor(int64: [1, 2], shape: [1, 2]))], to: ids)
        try expectFailure(["logits", "--weights", folder + "/none", "--input", ids, "--out", folder + "/o.safetensors"],
                          mentioning: "config.json does not exist")
        let hf = folder + "/hf"
        try HuggingFace.save(TransformerTrainTests.tinyLlama(), to: hf)
        try expectFailure(["logits", "--weights", hf, "--input", ids, "--out", folder + "/o.safetensors"], mentioning: "has no tensor 'input_ids'")
        try SafeTensors.save([("input_ids", Tensor([1, 2], shape: [1, 2]))], to: ids)
        try expectFailure(["logits", "--weights", hf, "--input", ids, "--out", folder + "/o.safetensors"], mentioning: "input_ids must be int64")
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: hf + "/model.safetensors"))
        try expectFailure(["generate", "--weights", hf], mentioning: "is corrupt or not a safetensors file")
    }

    /// `--resume` in a folder with weights but no training state started from scratch and
    /// overwrote the weights (exit 0). It now refuses, naming `--resume weights-only`, which
    /// starts a new run from those weights.
    @Test(.enabled(if: built, "the tandem executable is not built")) func resumeWithWeightsButNoStateRefuses() throws {
        let data = try DistributedTrainTests.smallMNIST(train: 128, test: 50)
        defer { try? FileManager.default.removeItem(atPath: data) }
        let base = data + "/base", resumed = data + "/resumed"
        let common = ["train", "--model", "convnet", "--data-dir", data, "--batch-size", "32", "--json"]
        #expect(try DistributedTrainTests.run(common + ["--max-steps", "2", "--out", base], limit: 60).status == 0)
        try FileManager.default.createDirectory(atPath: resumed, withIntermediateDirectories: true)
        let weights = try Data(contentsOf: URL(fileURLWithPath: base + "/model.safetensors"))
        try weights.write(to: URL(fileURLWithPath: resumed + "/model.safetensors"))
        try expectFailure(common + ["--max-steps", "3", "--out", resumed, "--resume"], mentioning: "--resume weights-only")
        #expect(try Data(contentsOf: URL(fileURLWithPath: resumed + "/model.safetensors")) == weights, "weights overwritten")
        let fromWeights = try DistributedTrainTests.run(common + ["--max-steps", "3", "--out", resumed, "--resume", "weights-only"],
                                                        limit: 60)
        #expect(fromWeights.status == 0, "\(fromWeights.output)")
        #expect(FileManager.default.fileExists(atPath: resumed + "/checkpoints/step-000000003"))
    }

    /// A diverging run (`--lr 1e6`) exits non-zero naming the step and the tensor; `eval` of
    /// weights that hold NaN says so.
    @Test(.enabled(if: built, "the tandem executable is not built")) func divergenceAndNonFiniteWeights() throws {
        let data = try DistributedTrainTests.smallMNIST(train: 128, test: 50)
        defer { try? FileManager.default.removeItem(atPath: data) }
        try expectFailure(["train", "--model", "convnet", "--data-dir", data, "--batch-size", "32", "--lr", "1e6",
                           "--out", data + "/run"], mentioning: "training diverged at step")
        var state = ConvNet().stateDict()
        state[0].1 = Tensor.full(state[0].1.shape, .nan)
        try SafeTensors.save(state, to: data + "/nan.safetensors")
        let result = try DistributedTrainTests.run(["eval", "--model", "convnet", "--weights", data + "/nan.safetensors",
                                                    "--data-dir", data], limit: 60)
        #expect(result.output.contains("warning") && result.output.contains(state[0].0) && result.output.contains("NaN"),
                "\(result.output)")
    }

    /// Ranks started with different --batch-size failed only after a whole epoch, blaming a
    /// dead peer; now they fail at once naming the flag and both values.
    @Test(.enabled(if: built, "the tandem executable is not built")) func ranksWithDifferentFlagsFailAtOnce() throws {
        let data = try DistributedTrainTests.smallMNIST(train: 256, test: 50)
        defer { try? FileManager.default.removeItem(atPath: data) }
        let exe = try #require(DistributedTrainTests.tandemExecutable())
        let start = Date()
        try expectFailure(["run", "--standalone", "--nproc-per-node", "2", "--", "/bin/sh", "-c",
                           "exec \"\(exe)\" train --model convnet --data-dir \(data) --batch-size $((16 * (RANK + 1))) --threads 1"],
                          mentioning: "rank 0 has --batch-size 16, rank 1 has --batch-size 32")
        #expect(Date().timeIntervalSince(start) < 20)
    }

    /// `tandem plot` draws two runs into one SVG (and a PNG where rsvg-convert is installed,
    /// as scripts/setup.sh does); a missing run is named.
    @Test(.enabled(if: built, "the tandem executable is not built")) func plotDrawsRuns() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-plot-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for (run, scale) in [("one", 1.0), ("ddp", 0.5)] {
            try FileManager.default.createDirectory(atPath: folder + "/" + run, withIntermediateDirectories: true)
            let lines = (1...5).map { "{\"kind\":\"step\",\"step\":\($0 * 10),\"loss\":\(scale / Double($0))}" }
                + ["{\"kind\":\"epoch\",\"step\":50,\"test_accuracy\":0.9,\"test_loss\":0.3}"]
            try lines.joined(separator: "\n").write(toFile: folder + "/" + run + "/metrics.jsonl", atomically: true, encoding: .utf8)
        }
        let png = FileManager.default.isExecutableFile(atPath: "/usr/bin/rsvg-convert")
        let result = try DistributedTrainTests.run(["plot", folder + "/one", folder + "/ddp", "--out", folder + "/runs.svg"]
                                                   + (png ? ["--png", folder + "/runs.png"] : []), limit: 30)
        #expect(result.status == 0, "\(result.output)")
        let svg = try String(contentsOfFile: folder + "/runs.svg", encoding: .utf8)
        #expect(svg.contains(">one<") && svg.contains(">ddp<") && svg.contains("test accuracy"))
        if png { #expect(try Data(contentsOf: URL(fileURLWithPath: folder + "/runs.png")).starts(with: [0x89, 0x50, 0x4E, 0x47])) }
        try expectFailure(["plot", folder + "/missing"], mentioning: "missing' does not exist")
        // A metrics file that is not JSON lines, and --tensorboard on a file: typed errors naming them.
        try Data("not json".utf8).write(to: URL(fileURLWithPath: folder + "/one/metrics.jsonl"))
        try expectFailure(["plot", folder + "/one"], mentioning: "has a line that is not a JSON object")
        try expectFailure(["train", "--max-steps", "1", "--tensorboard", folder + "/runs.svg"],
                          mentioning: "--tensorboard '\(folder)/runs.svg' is a file")
    }
}
