import Foundation
import Glibc
import Testing
import TandemData
import TandemModels
import TandemNN
import TandemTestSupport
import TandemTrain

/// The programs under `Examples/` run: `mnist` for a few steps, and `mnist-ddp-tcp` as two
/// processes started by hand (`--rank 0/1 --world-size 2`). Skipped when they are not built
/// (`swift build` builds them; so does `swift test`).
@Suite(.serialized) struct ExamplesTests {
    static func executable(_ name: String) -> String? {
        let candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path,
                          DistributedTrainTests.repoRoot + "/.build/debug/" + name]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static var examplesBuilt: Bool { executable("mnist") != nil && executable("mnist-ddp-tcp") != nil }

    /// A started process whose output (stdout and stderr) is collected on a thread.
    final class Running: @unchecked Sendable {
        let process = Process()
        private var data = Data()
        private let done = DispatchSemaphore(value: 0)

        init(_ executable: String, _ arguments: [String]) throws {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.environment = childEnvironment(["TANDEM_NUM_THREADS": "1"])
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            Thread { [self] in data = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }.start()
        }

        /// Waits up to `limit` seconds (then terminates the process); returns status and output.
        func finish(limit: Double = 180) -> (status: Int32, output: String) {
            if done.wait(timeout: .now() + limit) == .timedOut { process.terminate(); _ = done.wait(timeout: .now() + 5) }
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
    }

    @Test(.enabled(if: examplesBuilt, "the examples are not built: swift build --product mnist; swift build --product mnist-ddp-tcp")) func mnistTrainsFiveStepsAndSavesPyTorchNames() throws {
        let data = try DistributedTrainTests.smallMNIST(train: 256, test: 100)
        let out = data + "/mnist.safetensors"
        let run = try Running(Self.executable("mnist")!, ["--data-dir", data, "--max-steps", "5", "--batch-size", "16",
                                                          "--log-every", "1", "--out", out]).finish()
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("Epoch [1/2], Step [5/16], Loss:"), "\(run.output)")
        #expect(!run.output.contains("Step [6/"), "--max-steps 5 ran more steps: \(run.output)")
        #expect(run.output.contains("Evaluate accuracy is") && run.output.contains("Training complete in:"), "\(run.output)")
        let saved = try SafeTensors.load(path: out)
        #expect(saved.tensors["layer1.0.weight"]?.shape == [16, 1, 5, 5] && saved.tensors["layer1.1.running_mean"] != nil)
        try Checkpoint.loadWeights(path: out, into: ConvNet())
    }

    @Test(.enabled(if: examplesBuilt, "the examples are not built: swift build --product mnist; swift build --product mnist-ddp-tcp")) func mnistDDPOverTCPTwoProcessesStartedByHand() throws {
        let data = try DistributedTrainTests.smallMNIST(train: 256, test: 100)
        let out = data + "/ddp.safetensors"
        let common = ["--init-method", "tcp://127.0.0.1:\(freePort())", "--world-size", "2", "--data-dir", data,
                      "--max-steps", "4", "--batch-size", "16", "--log-every", "1", "--amp", "fp16", "--sync-bn", "--out", out]
        let tcp = Self.executable("mnist-ddp-tcp")!
        let rank1 = try Running(tcp, common + ["--rank", "1"])
        let rank0 = try Running(tcp, common + ["--rank", "0"])
        let (r0, r1) = (rank0.finish(), rank1.finish())
        #expect(r0.status == 0 && r1.status == 0, "rank 0:\n\(r0.output)\nrank 1:\n\(r1.output)")
        // 256 images over 2 ranks in batches of 16: 8 steps per epoch on each rank.
        #expect(r0.output.contains("Epoch [1/1], Step [4/8], Loss:"), "\(r0.output)")
        // The test counts are summed over ranks: each of the 100 test images counted once.
        #expect(r0.output.contains("Evaluate accuracy is") && r0.output.contains("(100 test images)"), "\(r0.output)")
        #expect(r0.output.contains("on 2 processes"), "\(r0.output)")
        // Only rank 0 prints and saves.
        #expect(!r1.output.contains("Epoch [") && !r1.output.contains("Evaluate") && !r1.output.contains("saved"), "\(r1.output)")
        try Checkpoint.loadWeights(path: out, into: ConvNet())
    }
}
