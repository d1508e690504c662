import Foundation
import Testing
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemTestSupport
import TandemTrain

/// Edit distance and CTC digit-string training (`CTCTask` in the `Trainer`) on a few hundred real MNIST strings.
@Suite(.serialized) struct CTCTaskTests {
    static var repoRoot: String { Golden.folder.replacingOccurrences(of: "/Tests/Fixtures/golden", with: "") }

    @Test func editDistance() {
        #expect(CTCMetrics.editDistance([], []) == 0)
        #expect(CTCMetrics.editDistance([1, 2, 3], []) == 3)
        #expect(CTCMetrics.editDistance([], [4, 5]) == 2)
        #expect(CTCMetrics.editDistance([1, 2, 3], [1, 2, 3]) == 0)
        #expect(CTCMetrics.editDistance([1, 2, 3], [1, 3]) == 1)          // deletion
        #expect(CTCMetrics.editDistance([1, 3], [1, 2, 3]) == 1)          // insertion
        #expect(CTCMetrics.editDistance([1, 2, 3], [1, 4, 3]) == 1)       // substitution
        #expect(CTCMetrics.editDistance([1, 2, 3, 4], [2, 1, 4, 3]) == 3)      // no transpositions: 1 deletion, 1 insertion, 1 substitution
        // kitten → sitting is 3, with letters as labels.
        let kitten = Array("kitten".unicodeScalars.map { Int($0.value) }), sitting = Array("sitting".unicodeScalars.map { Int($0.value) })
        #expect(CTCMetrics.editDistance(kitten, sitting) == 3)
        #expect(CTCMetrics.editDistance(sitting, kitten) == 3)
        // Symmetric and bounded by the longer length on random strings.
        let g = Generator(seed: 1)
        for _ in 0..<50 {
            let a = (0..<Int(g.next() % 7)).map { _ in Int(g.next() % 3) }, b = (0..<Int(g.next() % 7)).map { _ in Int(g.next() % 3) }
            let d = CTCMetrics.editDistance(a, b)
            #expect(d == CTCMetrics.editDistance(b, a) && d <= Swift.max(a.count, b.count) && d >= Swift.abs(a.count - b.count))
        }
    }

    @Test func counts() {
        var c = CTCMetrics.Counts()
        c.add(decoded: [1, 2, 3], target: [1, 2, 3])
        c.add(decoded: [1, 2], target: [1, 2, 4])
        c.add(decoded: [5, 6, 7, 8], target: [5, 7])
        #expect(c.strings == 3 && c.correct == 1 && c.edits == 3 && c.targetLabels == 8)
        #expect(Swift.abs(c.sequenceAccuracy - 1.0 / 3) < 1e-12 && c.characterErrorRate == 3.0 / 8)
    }

    static func strings() throws -> (MNISTStrings, MNISTStrings) {
        let mnist = try MNIST(folder: repoRoot + "/Data/mnist", train: false)
        let labels = mnist.labels.toIntArray()
        let train = try MNISTStrings(images: mnist.images.narrow(axis: 0, start: 0, length: 5000), labels: Array(labels[0..<5000]),
                                     count: 256, seed: 1)
        let test = try MNISTStrings(images: mnist.images.narrow(axis: 0, start: 5000, length: 5000), labels: Array(labels[5000...]),
                                    count: 40, seed: 2)
        return (train, test)
    }

    @Test func trainingStepsReduceTheLossAndWriteACheckpoint() throws {
        let (train, test) = try Self.strings()
        let model = CTCDigitRecognizer(channels: (8, 16), dModel: 32, dState: 8, headdim: 16, chunkSize: 16, generator: Generator(seed: 2))
        let optimizer = try Adam(model.parameters(), lr: 3e-3)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("ctc-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let task = try CTCTask(recognizer: model, train: train, test: test, batchSize: 16, beamWidth: 4)
        var config = TrainConfig()
        config.maxSteps = 16
        config.showProgress = false
        config.logEvery = 1
        config.outDir = out
        config.clipNorm = 5
        config.scheduleStep = .perStep
        config.evaluation = .atEnd
        let trainer = Trainer(model: model, optimizer: optimizer, schedule: nil, task: task, config: config)
        let probe = try train.collate(Array(0..<32))
        model.eval()
        let before = try Tensor.withNoGrad { try task.loss(model, probe).item() }
        model.train()
        let result = try trainer.fit()
        model.eval()
        let after = try Tensor.withNoGrad { try task.loss(model, probe).item() }
        #expect(result.steps == 16 && result.epochs == 1)
        #expect(after < 0.8 * before, "loss \(before) → \(after)")
        let e = try Tensor.withNoGrad { try task.evaluation() }
        #expect(e.greedy.strings == 40 && e.beam.strings == 40 && e.greedy.targetLabels == e.beam.targetLabels)
        #expect(e.loss.isFinite && e.greedy.characterErrorRate >= 0 && e.beam.characterErrorRate >= 0)
        #expect(result.metrics["beam_cer"] == e.beam.characterErrorRate && result.metrics["test_loss"] == e.loss)
        // The checkpoint holds the model's state dict under its PyTorch-style names.
        let saved = try SafeTensors.load(path: out + "/" + Checkpoint.modelFile)
        #expect(Set(saved.tensors.keys) == Set(model.stateDict().map(\.0)))
        let reloaded = CTCDigitRecognizer(channels: (8, 16), dModel: 32, dState: 8, headdim: 16, chunkSize: 16)
        try Checkpoint.loadWeights(path: out + "/" + Checkpoint.modelFile, into: reloaded)
        reloaded.eval()
        #expect(try reloaded(probe.images, widths: probe.widths).toDoubleArray() == model(probe.images, widths: probe.widths).toDoubleArray())
        let records = try MetricsLog.read(path: out + "/metrics.jsonl")
        #expect(records.contains { $0["kind"] as? String == "epoch" && $0["beam_cer"] != nil })
    }

    /// `tandem train --model ctc-digits --dataset mnist-strings` under DDP on 2 processes.
    @Test(.enabled(if: DistributedTrainTests.tandemExecutable() != nil)) func cliTrainsUnderDDP() throws {
        let data = try DistributedTrainTests.smallMNIST(train: 300, test: 100)
        defer { try? FileManager.default.removeItem(atPath: data) }
        let out = data + "/run"
        let result = try DistributedTrainTests.run(
            ["train", "--model", "ctc-digits", "--dataset", "mnist-strings", "--data-dir", data, "--train-strings", "64",
             "--test-strings", "20", "--batch-size", "8", "--nproc-per-node", "2", "--out", out, "--json"], limit: 240)
        #expect(result.status == 0, "\(result.output)")
        let json = result.output.split(separator: "\n").first { $0.contains("\"world_size\"") }.map(String.init) ?? ""
        // 64 strings on 2 ranks, 8 per step: 4 steps.
        #expect(json.contains("\"world_size\":2") && json.contains("\"steps\":4") && json.contains("\"greedy_cer\""), "\(result.output)")
        #expect(json.contains("\"beam_sequence_accuracy\"") && json.contains("\"test_strings\":20"))
        try Checkpoint.loadWeights(path: out + "/model.safetensors", into: CTCDigitRecognizer())
    }
}
