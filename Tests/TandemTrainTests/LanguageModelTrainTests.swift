import Foundation
import Testing
import TandemCore
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemTrain

/// The classification Trainer on a byte-level language model (`ClassFirstLogits`): loss per
/// position, a checkpoint with mamba_ssm names (tied head under both names) that loads into
/// the bare model, and test loss equal to the mean next-byte cross-entropy.
@Suite struct LanguageModelTrainTests {
    @Test func trainsAndCheckpointsWithPyTorchNames() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-lm-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let text = String(repeating: "abcabd abcabe. ", count: 40)   // 600 bytes
        let corpus = [UInt8](text.utf8)
        let train = try TextDataset(corpus: corpus, context: 16, split: .train)
        let test = try TextDataset(corpus: corpus, context: 16, split: .test)
        var c = Mamba2LM.Config()
        (c.dModel, c.nLayers, c.dState, c.headdim, c.chunkSize) = (16, 1, 8, 8, 8)
        let lm = Mamba2LM(c, generator: Generator(seed: 2))
        let model = ClassFirstLogits(lm)
        #expect(model.stateDict().map(\.0) == lm.stateDict().map(\.0))
        let optimizer = try Adam.adamW(model.parameters(), lr: 1e-2, weightDecay: 0)
        var config = TrainConfig()
        config.epochs = 3
        config.outDir = out
        config.showProgress = false
        let trainer = Trainer(model: model, optimizer: optimizer, schedule: nil,
                              trainLoader: try DataLoader(train, batchSize: 8, shuffle: true, dropLast: true, seed: 1),
                              testLoader: try DataLoader(test, batchSize: 2), config: config)
        let before = try trainer.evaluate()
        let result = try trainer.fit()
        #expect(result.steps == 3 * (train.count / 8))
        let testLoss = try #require(result.testLoss), trainLoss = try #require(result.trainLoss)
        let beforeLoss = try #require(before["test_loss"])
        #expect(testLoss < beforeLoss - 2, "test loss \(beforeLoss) → \(testLoss), train \(trainLoss)")

        // The test loss is the mean cross-entropy over every test position.
        var sum = 0.0, n = 0
        try Tensor.withNoGrad {
            for i in 0..<test.count {
                let (x, y) = try test.batch([i], epoch: 0)
                sum += try Tensor.crossEntropy(lm(x).reshape([-1, 256]), target: y.reshape([-1]), reduction: .sum).item()
                n += y.count
            }
        }
        #expect(Swift.abs(sum / Double(n) - testLoss) < 1e-4)

        // The checkpoint has both tied names and loads into a bare model.
        let file = try SafeTensors.load(path: out + "/" + Checkpoint.modelFile)
        #expect(file.tensors["lm_head.weight"]?.toDoubleArray() == file.tensors["backbone.embedding.weight"]?.toDoubleArray())
        #expect(Set(file.tensors.keys) == Set(lm.stateDict().map(\.0)))
        let reloaded = Mamba2LM(try #require(Mamba2LM.Config.inferred(from: file.tensors)))
        try Checkpoint.loadWeights(path: out + "/" + Checkpoint.modelFile, into: reloaded)
        let x = try test.batch([0], epoch: 0).input
        let diff = zip(try reloaded(x).toDoubleArray(), try lm(x).toDoubleArray()).map { Swift.abs($0 - $1) }.max() ?? .infinity
        #expect(diff < 1e-4)   // same weights; the chunk length (8 vs 64) only changes rounding
    }
}
