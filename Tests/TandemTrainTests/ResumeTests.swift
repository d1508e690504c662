import Foundation
import Testing
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemTestSupport
import TandemTrain

@Suite struct ResumeTests {
    static var repoRoot: String { Golden.folder.replacingOccurrences(of: "/Tests/Fixtures/golden", with: "") }

    func subset() throws -> (TensorDataset, TensorDataset) {
        let mnist = try MNIST(folder: Self.repoRoot + "/Data/mnist", train: false)
        let train = try TensorDataset(inputs: mnist.normalizedImages(0..<192), targets: mnist.labels.narrow(axis: 0, start: 0, length: 192))
        let test = try TensorDataset(inputs: mnist.normalizedImages(1000..<1100), targets: mnist.labels.narrow(axis: 0, start: 1000, length: 100))
        return (train, test)
    }

    func temporaryFolder() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("tandem-\(UUID().uuidString)").path
    }

    /// Runs `epochs` epochs (optionally stopping after `maxSteps`) into `out`, resuming if asked.
    func train(out: String, epochs: Int, maxSteps: Int? = nil, resume: Bool, lr: Double = 0.05) throws -> (ConvNet, TrainResult) {
        let (train, test) = try subset()
        let model = ConvNet(generator: Generator(seed: 1))
        let optimizer = try SGD(model.parameters(), lr: lr, momentum: 0.9, weightDecay: 1e-4)
        let schedule = try StepLR(optimizer, stepSize: 1, gamma: 0.5)
        var config = TrainConfig()
        config.epochs = epochs
        config.maxSteps = maxSteps
        config.outDir = out
        config.resume = resume
        config.showProgress = false
        config.logEvery = 1
        let trainer = Trainer(model: model, optimizer: optimizer, schedule: schedule,
                              trainLoader: try DataLoader(train, batchSize: 32, shuffle: true, seed: 3),
                              testLoader: try DataLoader(test, batchSize: 50), config: config)
        return (model, try trainer.fit())
    }

    @Test func resumeEqualsStraightRun() throws {
        let straightDir = temporaryFolder(), resumedDir = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: straightDir); try? FileManager.default.removeItem(atPath: resumedDir) }
        let (straight, straightResult) = try train(out: straightDir, epochs: 2, resume: false)
        #expect(straightResult.steps == 12)
        // Stop after 1 epoch, then stop mid-epoch (step 9), then finish.
        _ = try train(out: resumedDir, epochs: 1, resume: false)
        _ = try train(out: resumedDir, epochs: 2, maxSteps: 9, resume: true)
        let (resumed, resumedResult) = try train(out: resumedDir, epochs: 2, resume: true)
        #expect(resumedResult.steps == 12)
        for ((name, a), (_, b)) in zip(straight.stateDict(), resumed.stateDict()) {
            #expect(a.toDoubleArray() == b.toDoubleArray(), "\(name) differs after resume")
        }
        // The outputs a user looks at exist.
        for file in ["model.safetensors", "checkpoints", "metrics.jsonl", "metrics.svg"] {
            #expect(FileManager.default.fileExists(atPath: resumedDir + "/" + file), "\(file)")
        }
        let records = try MetricsLog.read(path: resumedDir + "/metrics.jsonl")
        #expect(records.filter { $0["kind"] as? String == "step" }.count == 12)
    }

    @Test func checkpointFromAnotherModelIsRejected() throws {
        let dir = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try train(out: dir, epochs: 1, maxSteps: 1, resume: false)
        let other = CIFARToyModel()
        #expect { try Checkpoint.loadWeights(path: dir + "/model.safetensors", into: other) } throws: {
            "\($0)".contains("do not fit") && "\($0)".contains("model.safetensors")
        }
        // A corrupt file is a typed error naming it.
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        #expect { try Checkpoint.loadWeights(path: dir + "/model.safetensors", into: ConvNet()) } throws: {
            "\($0)".contains("model.safetensors")
        }
    }

    /// `--lr 1e6` kept a finite loss (about 2e6) while a batch norm's running variance went to
    /// inf, and the run exited 0 with the infs in its checkpoint. Now it stops with a typed
    /// error naming the step and the tensor, and the checkpoint before it stays as it was.
    @Test func divergenceStopsTrainingAndKeepsTheLastGoodCheckpoint() throws {
        let dir = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try train(out: dir, epochs: 1, resume: false)
        let good = try Data(contentsOf: URL(fileURLWithPath: dir + "/model.safetensors"))
        #expect { _ = try train(out: dir, epochs: 2, resume: true, lr: 1e6) } throws: { error in
            guard case let .diverged(step, tensor, _)? = error as? TrainError else { return false }
            return step > 6 && !tensor.isEmpty
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/model.safetensors")) == good)
        #expect(Checkpoint.latest(in: dir)?.step == 6)
    }

    /// A NaN (a skipped float16 step's loss) is written as null, not a JSON error that ended the run.
    @Test func metricsWriteNonFiniteValuesAsNull() throws {
        let dir = temporaryFolder()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try MetricsLog(path: dir + "/m.jsonl")
        try log.write(["loss": Double.nan, "scale": Double.infinity, "nested": ["x": -Double.infinity], "step": 3])
        let records = try MetricsLog.read(path: dir + "/m.jsonl")
        #expect(records.count == 1 && records[0]["loss"] is NSNull && records[0]["scale"] is NSNull)
        #expect((records[0]["nested"] as? [String: Any])?["x"] is NSNull && records[0]["step"] as? Int == 3)
    }
}
