import Foundation
import TandemNN
import TandemOptim

/// Checkpoints in a folder: `model.safetensors` holds the model's state dict under PyTorch's
/// names (loadable with `safetensors.torch.load_file` into the same `nn.Module`), and
/// `training_state.safetensors` holds optimizer state (`optimizer.*`), the loss scaler's
/// state (`grad_scaler.*`, float16 AMP), counters and the scheduler position.
/// Each file is written atomically (temporary file, fsync, rename).
public enum Checkpoint {
    public static let modelFile = "model.safetensors"
    public static let stateFile = "training_state.safetensors"

    /// Where training resumes from.
    public struct Position: Equatable, Sendable {
        public var epoch: Int
        public var step: Int
        public init(epoch: Int, step: Int) { self.epoch = epoch; self.step = step }
    }

    /// Saves model weights and training state into `folder` (created if needed).
    public static func save(model: any Module, optimizer: any StatefulOptimizer, schedule: (any LRSchedule)?,
                            scaler: GradScaler? = nil, position: Position, metadata: [String: String] = [:],
                            to folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var meta = metadata
        meta["epoch"] = "\(position.epoch)"
        meta["step"] = "\(position.step)"
        meta["schedule_epoch"] = "\(schedule?.epoch ?? 0)"
        let scalerState = scaler?.stateDict().map { ("grad_scaler.\($0.0)", $0.1) } ?? []
        try SafeTensors.save(optimizer.stateDict().map { ("optimizer.\($0.0)", $0.1) } + scalerState, metadata: meta,
                             to: folder + "/" + stateFile)
        try SafeTensors.save(model.stateDict(), metadata: ["format": "pt", "step": "\(position.step)"], to: folder + "/" + modelFile)
    }

    /// Loads weights into `model` (strict) and state into the optimizer and schedule; returns
    /// the position to continue from. Errors name the file and what does not fit.
    /// A `scaler` takes the saved loss-scaler state if there is one (a checkpoint of a run
    /// without float16 AMP has none: the scaler then keeps its initial scale).
    public static func load(from folder: String, model: any Module, optimizer: any StatefulOptimizer,
                            schedule: (any LRSchedule)?, scaler: GradScaler? = nil) throws -> Position {
        let weights = try loadWeights(path: folder + "/" + modelFile, into: model)
        let state = try SafeTensors.load(path: folder + "/" + stateFile)
        guard let epoch = state.metadata["epoch"].flatMap(Int.init), let step = state.metadata["step"].flatMap(Int.init) else {
            throw TrainError.checkpoint("'\(folder)/\(stateFile)' lacks its epoch/step metadata; it was not written by Tandem")
        }
        if let weightStep = weights.metadata["step"].flatMap(Int.init), weightStep != step {
            throw TrainError.checkpoint("checkpoint files in '\(folder)' come from different steps (\(weightStep) and \(step)); the last save was interrupted, restore both files from one save")
        }
        var optimizerState: [String: Tensor] = [:]
        for (k, v) in state.tensors where k.hasPrefix("optimizer.") { optimizerState[String(k.dropFirst(10))] = v }
        try optimizer.loadStateDict(optimizerState)
        var scalerState: [String: Tensor] = [:]
        for (k, v) in state.tensors where k.hasPrefix("grad_scaler.") { scalerState[String(k.dropFirst(12))] = v }
        if let scaler, !scalerState.isEmpty { try scaler.loadStateDict(scalerState) }
        if let schedule, let e = state.metadata["schedule_epoch"].flatMap(Int.init) {
            schedule.epoch = e
            optimizer.learningRate = schedule.rate(at: e)
        }
        return Position(epoch: epoch, step: step)
    }

    /// Loads a safetensors state dict (ours or PyTorch's) into `model`, strictly.
    @discardableResult
    public static func loadWeights(path: String, into model: any Module) throws -> SafeTensors.File {
        let file = try SafeTensors.load(path: path)
        do { try model.loadStateDict(file.tensors) } catch {
            throw TrainError.checkpoint("weights '\(path)' do not fit the model: \(error)")
        }
        return file
    }
}
