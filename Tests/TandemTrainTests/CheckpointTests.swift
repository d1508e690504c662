import Foundation
import Testing
import TandemCore
import TandemNN
import TandemOptim
@testable import TandemTrain

/// Checkpoints as one unit: killed at any step of a save, a run resumes from the old or the
/// new checkpoint, never from nothing and never with an error. Serialized: the tests share
/// the fault hook.
@Suite(.serialized) struct CheckpointTests {
    struct SimulatedKill: Error {}

    func temporaryFolder() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("tandem-ckpt-\(UUID().uuidString)").path
    }

    /// A small model whose every weight is `marker`, with an optimizer that has state.
    func model(marker: Double) throws -> (Linear, SGD) {
        let model = Linear(4, 3, generator: Generator(seed: 1))
        let optimizer = try SGD(model.parameters(), lr: 0.1, momentum: 0.9)
        try model(Tensor.ones([2, 4])).sum().backward()
        try optimizer.step()  // momentum buffers exist now
        for p in model.parameters() { try p.value.copyValues(from: Tensor.full(p.value.shape, marker)) }
        return (model, optimizer)
    }

    func save(step: Int, to out: String, keep: Int = Checkpoint.defaultKeep, marker: Double? = nil,
              discardOthers: Bool = false) throws {
        let (model, optimizer) = try model(marker: marker ?? Double(step))
        try Checkpoint.save(model: model, optimizer: optimizer, schedule: nil, position: .init(epoch: 0, step: step),
                            to: out, keep: keep, discardOthers: discardOthers)
    }

    /// Resumes from `out`: the position's step, and the marker the loaded weights carry.
    func resume(_ out: String) throws -> (step: Int, marker: Double)? {
        let (model, optimizer) = try model(marker: -1)
        guard let position = try Checkpoint.resume(in: out, mode: .full, model: model, optimizer: optimizer, schedule: nil)
        else { return nil }
        return (position.step, try model.parameters()[0].value.flatten()[0].item())
    }

    /// Every entry of `out` and its checkpoints folder whose name marks a temporary file.
    func leftovers(_ out: String) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? [])
            + ((try? FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints")) ?? [])
        return names.filter { $0.contains(".tmp-") || $0.contains(".old-") || $0.contains(".replaced-") }
    }

    /// A save killed at each of its steps: `after` lists the (step, marker) a resume may give.
    func killAtEveryStep(newStep: Int, newMarker: Double, discardOthers: Bool, after allowed: [(Int, Double)]) throws {
        // The steps of one save, as the fault hook sees them.
        let probe = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: probe) }
        try save(step: 40, to: probe)
        try save(step: 50, to: probe)
        nonisolated(unsafe) var points: [String] = []
        Checkpoint.faultPoint = { out, point in if out == probe { points.append(point) } }
        try save(step: newStep, to: probe, marker: newMarker, discardOthers: discardOthers)
        Checkpoint.faultPoint = nil
        #expect(points.contains("state partial") && points.contains("publish") && points.contains("copied"), "\(points)")

        for (index, point) in points.enumerated() {
            let out = temporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: out) }
            try save(step: 40, to: out)
            try save(step: 50, to: out)
            nonisolated(unsafe) var seen = 0
            Checkpoint.faultPoint = { folder, _ in
                guard folder == out else { return }
                if seen == index { throw SimulatedKill() }
                seen += 1
            }
            #expect(throws: SimulatedKill.self, "\(point)") {
                try save(step: newStep, to: out, marker: newMarker, discardOthers: discardOthers)
            }
            Checkpoint.faultPoint = nil
            let resumed = try #require(try resume(out), "killed at '\(point)': no checkpoint")
            #expect(allowed.contains { $0.0 == resumed.step && $0.1 == resumed.marker },
                    "killed at '\(point)': resumed at step \(resumed.step) with weights \(resumed.marker)")
            #expect(leftovers(out).isEmpty, "killed at '\(point)': \(leftovers(out)) left")
            // The run goes on and saves again.
            try save(step: 90, to: out)
            #expect(try resume(out)?.step == 90)
        }
    }

    @Test func killedAtEveryStepOfASaveResumesFromTheOldOrTheNewCheckpoint() throws {
        try killAtEveryStep(newStep: 80, newMarker: 80, discardOthers: false, after: [(50, 50), (80, 80)])
    }

    /// The same step saved again (marker 50.5), and a new run's first save replacing an old
    /// run's checkpoints: never nothing, never a half-deleted folder.
    @Test func killedWhileReplacingCheckpointsResumesFromACompleteOne() throws {
        try killAtEveryStep(newStep: 50, newMarker: 50.5, discardOthers: false, after: [(50, 50), (50, 50.5)])
        try killAtEveryStep(newStep: 10, newMarker: 10, discardOthers: true, after: [(50, 50), (10, 10)])
    }

    @Test func keepsTheNewestCheckpointsAndCopiesTheWeights() throws {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        for step in [10, 20, 30, 40] { try save(step: step, to: out, keep: 3) }
        let folders = try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints").sorted()
        #expect(folders == ["step-000000020", "step-000000030", "step-000000040"])
        // out/model.safetensors is the newest weights; overwriting it leaves the checkpoint.
        let (model, _) = try model(marker: 0)
        try Checkpoint.loadWeights(path: out + "/" + Checkpoint.modelFile, into: model)
        #expect(try model.parameters()[0].value.flatten()[0].item() == 40)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: out + "/" + Checkpoint.modelFile))
        #expect(try resume(out)?.step == 40)
    }

    /// `--resume` in a folder with weights but no training state refused nothing: it started
    /// from scratch and overwrote the weights. Now it is a typed error unless weights-only.
    @Test func weightsWithoutTrainingStateNeedWeightsOnly() throws {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let (trained, _) = try model(marker: 7)
        try SafeTensors.save(trained.stateDict(), to: out + "/" + Checkpoint.modelFile)
        let (model, optimizer) = try model(marker: 0)
        #expect { try Checkpoint.resume(in: out, mode: .full, model: model, optimizer: optimizer, schedule: nil) } throws: {
            "\($0)".contains("weights-only") && "\($0)".contains(out)
        }
        let position = try Checkpoint.resume(in: out, mode: .weightsOnly, model: model, optimizer: optimizer, schedule: nil)
        #expect(position == .init(epoch: 0, step: 0))
        #expect(try model.parameters()[0].value.flatten()[0].item() == 7)
        // An empty folder is a fresh start.
        let empty = temporaryFolder()
        #expect(try Checkpoint.resume(in: empty, mode: .full, model: model, optimizer: optimizer, schedule: nil) == nil)
    }
}
