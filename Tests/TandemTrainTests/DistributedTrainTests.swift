import Foundation
import Testing
import TandemData
import TandemModels
import TandemNN
import TandemTestSupport
import TandemTrain

/// End-to-end DDP through the CLI with real processes: `tandem train --nproc-per-node 2`.
@Suite(.serialized) struct DistributedTrainTests {
    static var repoRoot: String { Golden.folder.replacingOccurrences(of: "/Tests/Fixtures/golden", with: "") }

    static func tandemExecutable() -> String? {
        let candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tandem").path,
                          repoRoot + "/.build/debug/tandem"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A small MNIST folder (raw IDX files): `train` training and `test` test images.
    static func smallMNIST(train: Int, test: Int) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mnist-small-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let source = try MNIST(folder: repoRoot + "/Data/mnist", train: false)
        func write(_ name: String, range: Range<Int>) throws {
            let n = range.count
            var images = Data([0, 0, 8, 3]), labels = Data([0, 0, 8, 1])
            for v in [n, 28, 28] { images.append(contentsOf: withUnsafeBytes(of: UInt32(v).bigEndian, Array.init)) }
            labels.append(contentsOf: withUnsafeBytes(of: UInt32(n).bigEndian, Array.init))
            try source.images.narrow(axis: 0, start: range.lowerBound, length: n).withUnsafeBufferPointer(as: UInt8.self) { images.append(contentsOf: $0) }
            labels.append(contentsOf: try source.labels.narrow(axis: 0, start: range.lowerBound, length: n).toIntArray().map(UInt8.init))
            try images.write(to: URL(fileURLWithPath: "\(folder)/\(name)-images-idx3-ubyte"))
            try labels.write(to: URL(fileURLWithPath: "\(folder)/\(name)-labels-idx1-ubyte"))
        }
        try write("train", range: 0..<train)
        try write("t10k", range: 5000..<(5000 + test))
        return folder
    }

    struct Run { var status: Int32; var output: String }

    static func run(_ arguments: [String], environment: [String: String] = [:], limit: Double = 120) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tandemExecutable()!)
        p.arguments = arguments
        p.environment = childEnvironment(environment)
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Thread { box.data = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }.start()
        if done.wait(timeout: .now() + limit) == .timedOut { p.terminate(); _ = done.wait(timeout: .now() + 5) }
        p.waitUntilExit()
        return Run(status: p.terminationStatus, output: String(decoding: box.data, as: UTF8.self))
    }

    /// A malformed `TANDEM_HUGE_PAGES` stops the tool before it does anything, naming the variable.
    @Test(.enabled(if: tandemExecutable() != nil)) func malformedHugePagesSettingIsRefused() throws {
        let result = try Self.run(["advise"], environment: ["TANDEM_HUGE_PAGES": "off"], limit: 60)
        #expect(result.status != 0)
        #expect(result.output.contains("TANDEM_HUGE_PAGES") && result.output.contains("'off'"), "\(result.output)")
        #expect(try Self.run(["advise"], environment: ["TANDEM_HUGE_PAGES": "0"], limit: 60).status == 0)
    }

    @Test(.enabled(if: tandemExecutable() != nil)) func twoProcessTrainingWritesOneCheckpoint() throws {
        let data = try Self.smallMNIST(train: 256, test: 100)
        let out = data + "/run"
        let result = try Self.run(["train", "--model", "convnet", "--data-dir", data, "--epochs", "1", "--batch-size", "16",
                                   "--nproc-per-node", "2", "--sync-bn", "--log-every", "1", "--out", out, "--json"])
        #expect(result.status == 0, "\(result.output)")
        let json = result.output.split(separator: "\n").first { $0.contains("\"world_size\"") }.map(String.init) ?? ""
        #expect(json.contains("\"world_size\":2") && json.contains("\"steps\":8"), "\(result.output)")
        #expect(json.hasPrefix("{"), "rank 0's JSON object is printed without the rank prefix: \(json)")
        // Only rank 0 prints the result.
        #expect(result.output.components(separatedBy: "\"world_size\"").count == 2)
        let model = ConvNet()
        try Checkpoint.loadWeights(path: out + "/model.safetensors", into: model)
        // Rank 0 logs every step (--log-every 1) with its duration, its time in the all-reduce
        // and when it ended (Unix seconds, increasing).
        let steps = try MetricsLog.read(path: out + "/metrics.jsonl").filter { $0["kind"] as? String == "step" }
        #expect(steps.count == 8)
        var previousEnd = Date().timeIntervalSince1970 - 600
        for record in steps {
            let seconds = try #require(record["step_seconds"] as? Double), waiting = try #require(record["communication_seconds"] as? Double)
            #expect(seconds > 0 && waiting >= 0 && waiting < seconds, "\(record)")
            let end = try #require(record["time"] as? Double)
            #expect(end > previousEnd && end <= Date().timeIntervalSince1970, "\(record)")
            previousEnd = end
        }
    }

    @Test(.enabled(if: tandemExecutable() != nil)) func logIntervalMustBePositive() throws {
        let result = try Self.run(["train", "--model", "convnet", "--log-every", "0"], limit: 60)
        #expect(result.status != 0 && result.output.contains("--log-every must be at least 1"), "\(result.output)")
    }

    /// float16 AMP in a 2-process DDP job: the GradScaler's found-inf flag is all-reduced, the
    /// job finishes, and rank 0's checkpoint holds a scale consistent with the skipped steps.
    @Test(.enabled(if: tandemExecutable() != nil)) func twoProcessFloat16TrainingWithGradScaler() throws {
        let data = try Self.smallMNIST(train: 256, test: 100)
        let out = data + "/run"
        let result = try Self.run(["train", "--model", "convnet", "--data-dir", data, "--epochs", "1", "--batch-size", "16",
                                   "--nproc-per-node", "2", "--amp", "fp16", "--out", out, "--json"])
        #expect(result.status == 0, "\(result.output)")
        let line = result.output.split(separator: "\n").first { $0.contains("\"world_size\"") }.map(String.init) ?? "{}"
        let object = line.firstIndex(of: "{").map { String(line[$0...]) } ?? "{}"  // the launcher may prefix the rank
        let json = try JSONSerialization.jsonObject(with: Data(object.utf8)) as? [String: Any] ?? [:]
        #expect(json["world_size"] as? Int == 2 && json["steps"] as? Int == 8 && json["amp"] as? String == "fp16", "\(result.output)")
        let skipped = try #require(json["skipped_steps"] as? Int, "\(result.output)")
        let state = try SafeTensors.load(path: try #require(Checkpoint.latest(in: out)).folder + "/" + Checkpoint.stateFile)
        #expect(try state.tensors["grad_scaler.scale"]?.item() == 65536 * pow(0.5, Double(skipped)))
    }

    @Test(.enabled(if: tandemExecutable() != nil)) func deadRankFailsTheJobAndRestartResumes() throws {
        let data = try Self.smallMNIST(train: 256, test: 100)
        let out = data + "/run"
        let train = ["train", "--model", "convnet", "--data-dir", data, "--epochs", "2", "--batch-size", "16", "--out", out, "--json"]
        // Rank 1 is killed after step 11, in the second epoch (the first epoch's checkpoint is at step 8),
        // on a group's first attempt only.
        let fault = ["TANDEM_FAULT_KILL_STEP": "11", "TANDEM_FAULT_KILL_RANK": "1"]
        let start = Date()
        let failed = try Self.run(train + ["--nproc-per-node", "2"], environment: fault)
        #expect(failed.status != 0)
        #expect(failed.output.contains("rank 1") && failed.output.contains("SIGKILL"), "\(failed.output)")
        #expect(Date().timeIntervalSince(start) < 90)
        // The last checkpoint is intact and loadable.
        try Checkpoint.loadWeights(path: out + "/model.safetensors", into: ConvNet())
        // With one restart allowed, the job dies again at step 11, restarts, resumes from step 8 and finishes.
        let restarted = try Self.run(["run", "--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "--",
                                      Self.tandemExecutable()!] + train + ["--resume"], environment: fault)
        #expect(restarted.status == 0, "\(restarted.output)")
        #expect(restarted.output.contains("\"steps\":16"), "\(restarted.output)")
    }

    /// One process at batch 64 and two at batch 32 draw the same global batches from the same
    /// permutation (shuffling on), so with SyncBatchNorm they train the same weights. The
    /// learning rate is small enough that no ReLU or max-pool decision flips on float rounding
    /// in 30 steps; at the default 0.01 with momentum 0.9, one process at 1 and at 2 threads
    /// already differ by 3.5e-2 after 30 steps (docs/BENCHMARKS.md), so no bound below that
    /// can hold there for any two different reduction orders.
    @Test(.enabled(if: tandemExecutable() != nil)) func oneAndTwoProcessesTrainTheSameWeights() throws {
        let data = try Self.smallMNIST(train: 1920, test: 100)
        let common = ["train", "--model", "convnet", "--data-dir", data, "--max-steps", "30", "--sync-bn", "--seed", "0",
                      "--lr", "0.001", "--momentum", "0", "--json"]
        let one = try Self.run(common + ["--batch-size", "64", "--out", data + "/one"])
        #expect(one.status == 0, "\(one.output)")
        let two = try Self.run(common + ["--batch-size", "32", "--nproc-per-node", "2", "--out", data + "/two"])
        #expect(two.status == 0, "\(two.output)")
        let a = try SafeTensors.load(path: data + "/one/model.safetensors"), b = try SafeTensors.load(path: data + "/two/model.safetensors")
        #expect(a.order == b.order, "SyncBatchNorm and DDP keep PyTorch's state-dict order")
        var worst = 0.0
        for name in a.order where name.hasSuffix("weight") || name.hasSuffix("bias") {
            guard let x = a.tensors[name], let y = b.tensors[name] else { continue }
            let d = zip(x.toDoubleArray(), y.toDoubleArray()).map { abs($0 - $1) }.max() ?? 0
            worst = max(worst, d)
        }
        #expect(worst <= 1e-4, "largest weight difference \(worst)")
    }
}
