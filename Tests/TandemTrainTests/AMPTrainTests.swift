import Foundation
import Testing
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemTestSupport
import TandemTrain

/// Training with `TrainConfig.amp`: bf16 trains without a scaler; fp16 uses a GradScaler
/// whose state goes into the checkpoint and comes back on resume.
@Suite struct AMPTrainTests {
    func run(amp: DType?, out: String?, epochs: Int = 1, resume: Bool = false) throws -> (Trainer<ClassificationTask<TensorDataset, TensorDataset>>, TrainResult) {
        let mnist = try MNIST(folder: ResumeTests.repoRoot + "/Data/mnist", train: false)
        let train = try TensorDataset(inputs: mnist.normalizedImages(0..<256), targets: mnist.labels.narrow(axis: 0, start: 0, length: 256))
        let test = try TensorDataset(inputs: mnist.normalizedImages(1000..<1200), targets: mnist.labels.narrow(axis: 0, start: 1000, length: 200))
        let model = ConvNet(generator: Generator(seed: 1))
        let optimizer = try SGD(model.parameters(), lr: 0.05, momentum: 0.9)
        var config = TrainConfig()
        config.epochs = epochs
        config.outDir = out
        config.resume = resume
        config.showProgress = false
        config.logEvery = 1
        config.amp = amp
        let trainer = Trainer(model: model, optimizer: optimizer, schedule: nil,
                              trainLoader: try DataLoader(train, batchSize: 32, shuffle: true, seed: 3),
                              testLoader: try DataLoader(test, batchSize: 100), config: config)
        return (trainer, try trainer.fit())
    }

    @Test func bfloat16TrainsLikeFloat32WithoutAScaler() throws {
        let (t32, r32) = try run(amp: nil, out: nil)
        let (t16, r16) = try run(amp: .bfloat16, out: nil)
        #expect(t32.scaler == nil && t16.scaler == nil)
        #expect(r16.steps == 8)
        let a32 = try #require(r32.testAccuracy), a16 = try #require(r16.testAccuracy)
        #expect(Swift.abs(a16 - a32) < 0.1, "bf16 \(a16) vs f32 \(a32)")
        // The master weights stay float32.
        #expect(t16.model.parameters().allSatisfy { $0.value.dtype == .float32 })
    }

    @Test func float16ScalerStateIsCheckpointedAndRestored() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-amp-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (trainer, result) = try run(amp: .float16, out: dir)
        let scaler = try #require(trainer.scaler)
        #expect(result.steps == 8)
        // At 65536 the first float16 gradients overflow (as in PyTorch): each skip halves the scale.
        #expect(scaler.scale == 65536 * pow(0.5, Double(result.skippedSteps)))
        #expect(scaler.growthTracker <= 8 - result.skippedSteps)
        let state = try SafeTensors.load(path: try #require(Checkpoint.latest(in: dir)).folder + "/" + Checkpoint.stateFile)
        #expect(try state.tensors["grad_scaler.scale"]?.item() == scaler.scale)
        #expect(try state.tensors["grad_scaler._growth_tracker"]?.item() == Double(scaler.growthTracker))
        // Resume into a second epoch: the scaler continues from the saved state, not from 65536.
        let (resumed, r2) = try run(amp: .float16, out: dir, epochs: 2, resume: true)
        let second = try #require(resumed.scaler)
        #expect(r2.steps == 16)
        #expect(second.scale == scaler.scale * pow(0.5, Double(r2.skippedSteps)))
        if r2.skippedSteps == 0 { #expect(second.growthTracker == scaler.growthTracker + 8) }
        let records = try MetricsLog.read(path: dir + "/metrics.jsonl")
        #expect(records.contains { $0["loss_scale"] != nil })
    }
}
