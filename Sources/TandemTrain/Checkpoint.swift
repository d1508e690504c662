import Foundation
import TandemNN
import TandemOptim

/// Checkpoints of a run in its output folder `out`, each one unit:
///
/// ```
/// out/checkpoints/step-000000938/model.safetensors            weights, PyTorch's names
/// out/checkpoints/step-000000938/training_state.safetensors   optimizer, loss scaler, counters, schedule
/// out/model.safetensors                                       a copy of the newest weights
/// ```
///
/// A save writes both files into a temporary folder, fsyncs them, and publishes the folder with
/// one rename; only then are `out/model.safetensors` (replaced atomically) and the checkpoints
/// beyond the last `keep` touched (each renamed out of sight before it is deleted). A process killed at any point leaves the previous complete
/// checkpoint, or the new one; `resume` takes the newest complete one and removes what a killed
/// save left behind. `model.safetensors` loads with `safetensors.torch.load_file` into the same
/// `nn.Module`. Folders written by older Tandem versions (both files directly in `out`) resume too.
public enum Checkpoint {
    public static let modelFile = "model.safetensors"
    public static let stateFile = "training_state.safetensors"
    /// The subfolder of `out` that holds the step folders.
    public static let folderName = "checkpoints"
    /// How many complete checkpoints a run keeps by default (`--keep-checkpoints`).
    public static let defaultKeep = 2

    /// Where training resumes from.
    public struct Position: Equatable, Sendable {
        public var epoch: Int
        public var step: Int
        public init(epoch: Int, step: Int) { self.epoch = epoch; self.step = step }
    }

    /// What `--resume` takes from the newest checkpoint.
    public enum ResumeMode: String, Sendable {
        /// Weights and training state: the run continues where it stopped.
        case full
        /// Weights only: a new run (step 0, fresh optimizer) starting from those weights.
        case weightsOnly = "weights-only"
    }

    /// Tests only: called with the output folder and the name of each step of `save` (a file
    /// half written is a step too); throwing there stops the save with the disk as a kill at
    /// that point would leave it.
    nonisolated(unsafe) static var faultPoint: ((_ out: String, _ point: String) throws -> Void)?

    /// Saves model weights and training state as the checkpoint of `position.step` in `out`
    /// (created if needed), then points `out/model.safetensors` at its weights and removes all
    /// but the newest `keep` checkpoints (with `discardOthers`, every other one: a new run in
    /// an old folder).
    public static func save(model: any Module, optimizer: any StatefulOptimizer, schedule: (any LRSchedule)?,
                            scaler: GradScaler? = nil, position: Position, metadata: [String: String] = [:],
                            to out: String, keep: Int = defaultKeep, discardOthers: Bool = false) throws {
        let root = out + "/" + folderName
        func fault(_ point: String) throws { try faultPoint?(out, point) }
        try fault("start")
        try OutputFolder.prepare(out)
        try OutputFolder.prepare(root)
        removeLeftovers(in: out)
        var meta = metadata
        meta["epoch"] = "\(position.epoch)"
        meta["step"] = "\(position.step)"
        meta["schedule_epoch"] = "\(schedule?.epoch ?? 0)"
        let scalerState = scaler?.stateDict().map { ("grad_scaler.\($0.0)", $0.1) } ?? []
        let stateData = try SafeTensors.encode(optimizer.stateDict().map { ("optimizer.\($0.0)", $0.1) } + scalerState, metadata: meta)
        let modelData = try SafeTensors.encode(model.stateDict(), metadata: ["format": "pt", "step": "\(position.step)"])

        let name = stepFolderName(position.step)
        let temporary = root + "/." + name + ".tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: temporary)
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        try fault("created")
        try writeSynced(stateData, to: temporary + "/" + stateFile) { try fault("state " + $0) }
        try writeSynced(modelData, to: temporary + "/" + modelFile) { try fault("model " + $0) }
        syncFolder(temporary)
        // Checkpoints that go are first renamed out of sight (`.old-`), one rename each, so a
        // half-deleted folder never looks published; the same step saved again is replaced so.
        for old in steps(in: root) where discardOthers || old.step == position.step {
            try retire(old.folder, replaced: old.step == position.step)
        }
        try fault("publish")
        let final = root + "/" + name
        try posix(rename(temporary, final), "publish '\(final)'")
        syncFolder(root)
        try fault("published")
        // A copy, not a link: a user who overwrites this file in place leaves the checkpoint intact.
        try AtomicFile.write(modelData, to: out + "/" + modelFile)
        try fault("copied")
        // A checkpoint of the layout before step folders is superseded now.
        try? FileManager.default.removeItem(atPath: out + "/" + stateFile)
        // Pruning is best effort: the new checkpoint is safe, a leftover goes at the next save.
        for old in steps(in: root).dropLast(Swift.max(keep, 1)) where old.step != position.step {
            try? retire(old.folder)
            try fault("pruned")
        }
        removeLeftovers(in: out)
    }

    /// The newest complete checkpoint of `out`: its folder and step; nil when there is none.
    /// Folders of the layout before step folders count (step from their training state).
    public static func latest(in out: String) -> (folder: String, step: Int)? {
        if let newest = steps(in: out + "/" + folderName).last { return newest }
        let legacy = out + "/" + stateFile
        guard FileManager.default.fileExists(atPath: legacy), FileManager.default.fileExists(atPath: out + "/" + modelFile),
              let step = (try? SafeTensors.load(path: legacy))?.metadata["step"].flatMap(Int.init) else { return nil }
        return (out, step)
    }

    /// `--resume` in `out`: loads the newest complete checkpoint (`mode`) after removing what
    /// an interrupted save left. Returns the position to continue from, or nil when `out` holds
    /// no checkpoint (a fresh start). Throws when `out` has weights but no training state and
    /// `mode` is `.full`: continuing would silently restart from step 0 and overwrite them.
    public static func resume(in out: String, mode: ResumeMode, model: any Module, optimizer: any StatefulOptimizer,
                              schedule: (any LRSchedule)?, scaler: GradScaler? = nil) throws -> Position? {
        removeLeftovers(in: out)
        if let newest = latest(in: out) {
            if mode == .weightsOnly {
                try loadWeights(path: newest.folder + "/" + modelFile, into: model)
                return Position(epoch: 0, step: 0)
            }
            return try load(from: newest.folder, model: model, optimizer: optimizer, schedule: schedule, scaler: scaler)
        }
        let weights = out + "/" + modelFile
        guard FileManager.default.fileExists(atPath: weights) else { return nil }
        guard mode == .weightsOnly else {
            throw TrainError.checkpoint("'\(out)' holds \(modelFile) but no training state, so the run cannot continue where "
                + "it stopped; pass --resume weights-only to start a new run from these weights, or choose another --out")
        }
        try loadWeights(path: weights, into: model)
        return Position(epoch: 0, step: 0)
    }

    /// Loads one checkpoint folder: weights into `model` (strict), state into the optimizer,
    /// schedule and `scaler` (a checkpoint of a run without float16 AMP has no scaler state:
    /// the scaler then keeps its initial scale). Returns the position to continue from. Errors
    /// name the file and what does not fit.
    public static func load(from folder: String, model: any Module, optimizer: any StatefulOptimizer,
                            schedule: (any LRSchedule)?, scaler: GradScaler? = nil) throws -> Position {
        let weights = try loadWeights(path: folder + "/" + modelFile, into: model)
        if let bad = FiniteCheck.firstNonFinite(model.stateDict()) {
            throw TrainError.checkpoint("'\(folder)/\(modelFile)' holds \(bad.name) \(bad.value): it was saved after training "
                + "diverged; resume from an earlier checkpoint (move this one out of the way) or start a new run")
        }
        let state = try SafeTensors.load(path: folder + "/" + stateFile)
        guard let epoch = state.metadata["epoch"].flatMap(Int.init), let step = state.metadata["step"].flatMap(Int.init) else {
            throw TrainError.checkpoint("'\(folder)/\(stateFile)' lacks its epoch/step metadata; it was not written by Tandem")
        }
        if let weightStep = weights.metadata["step"].flatMap(Int.init), weightStep != step {
            throw TrainError.checkpoint("checkpoint files in '\(folder)' come from different steps (\(weightStep) and \(step)); restore both files from one save")
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

    // MARK: - Files

    private static func stepFolderName(_ step: Int) -> String { "step-" + String(format: "%09d", step) }

    /// The published step folders under `root`, oldest first.
    private static func steps(in root: String) -> [(folder: String, step: Int)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { name -> (String, Int)? in
            guard name.hasPrefix("step-"), let step = Int(name.dropFirst(5)), step >= 0 else { return nil }
            return (root + "/" + name, step)
        }.sorted { $0.1 < $1.1 }
    }

    /// Renames a published checkpoint folder out of sight: `.step-N.replaced-PID` when a save of
    /// the same step replaces it, else `.step-N.old-PID` (removed with the leftovers).
    private static func retire(_ folder: String, replaced: Bool = false) throws {
        let url = URL(fileURLWithPath: folder)
        let aside = url.deletingLastPathComponent().path + "/." + url.lastPathComponent
            + (replaced ? ".replaced-" : ".old-") + "\(getpid())"
        try? FileManager.default.removeItem(atPath: aside)
        try posix(rename(folder, aside), "retire '\(folder)'")
    }

    /// Cleans up after interrupted saves (any process's). A save killed after retiring what it
    /// replaces but before publishing its own leaves them retired: a replaced step with no
    /// published folder is published again, and so is the newest retired one when nothing is
    /// published at all. Then every temporary and retired folder and temporary weights file goes.
    private static func removeLeftovers(in out: String) {
        let root = out + "/" + folderName
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        /// Retired folders: name, step, whether it was replaced by a save of the same step.
        let retired = names.compactMap { name -> (name: String, step: Int, replaced: Bool)? in
            guard name.hasPrefix(".step-"), let dot = name.dropFirst(6).firstIndex(of: "."),
                  let step = Int(name.dropFirst(6)[..<dot]) else { return nil }
            if name[dot...].hasPrefix(".replaced-") { return (name, step, true) }
            if name[dot...].hasPrefix(".old-") { return (name, step, false) }
            return nil
        }
        let published = Set(steps(in: root).map(\.step))
        for r in retired where r.replaced && !published.contains(r.step) {
            _ = rename(root + "/" + r.name, root + "/" + stepFolderName(r.step))
        }
        if steps(in: root).isEmpty, let newest = retired.filter({ !$0.replaced }).max(by: { $0.step < $1.step }) {
            _ = rename(root + "/" + newest.name, root + "/" + stepFolderName(newest.step))
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        where name.hasPrefix(".step-") && (name.contains(".tmp-") || name.contains(".old-") || name.contains(".replaced-")) {
            try? FileManager.default.removeItem(atPath: root + "/" + name)
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        where name.hasPrefix("." + modelFile + ".tmp-") || name.hasPrefix("." + stateFile + ".tmp-") {
            try? FileManager.default.removeItem(atPath: out + "/" + name)
        }
    }

    /// Writes `data` to a new file and fsyncs it (the fault point sees half of it written first).
    private static func writeSynced(_ data: Data, to path: String, fault: (String) throws -> Void) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw TrainError.checkpoint("cannot create '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let chunk = written == 0 && raw.count > 1 ? raw.count / 2 : raw.count - written
                let n = Foundation.write(fd, raw.baseAddress! + written, chunk)
                guard n > 0 else { throw TrainError.checkpoint("writing '\(path)' failed: \(String(cString: strerror(errno)))") }
                written += n
                if written < raw.count { try fault("partial") }
            }
        }
        guard fsync(fd) == 0 else { throw TrainError.checkpoint("fsync of '\(path)' failed: \(String(cString: strerror(errno)))") }
        try fault("written")
    }

    private static func syncFolder(_ path: String) {
        let fd = open(path, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    private static func posix(_ result: Int32, _ what: String) throws {
        guard result == 0 else { throw TrainError.checkpoint("cannot \(what): \(String(cString: strerror(errno)))") }
    }

}
