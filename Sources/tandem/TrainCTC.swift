import ArgumentParser
import Foundation
import TandemData
import TandemDistributed
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel
import TandemTrain

/// `tandem train --model ctc-digits --dataset mnist-strings`: the CTC digit-string recogniser
/// (`CTCDigitRecognizer` on `MNISTStrings`, trained by `CTCTrainer`).
///
/// Differences from the classifiers: the optimizer is AdamW (`--weight-decay`, default 0),
/// the learning rate defaults to 3e-3 unless `--lr` is given, and the schedule is a cosine
/// over optimizer steps unless `--scheduler none` (or `step`, read as none) is given.
/// DDP works as for the classifiers (`--nproc-per-node`, `tandem run`, `--sync-bn`).
extension TrainCommand {
    /// Whether `--name` appears on the command line (to tell defaults from explicit values).
    private static func given(_ name: String) -> Bool {
        CommandLine.arguments.contains { $0 == name || $0.hasPrefix(name + "=") }
    }

    func validateCTC() throws {
        guard nprocPerNode >= 1 else { throw ValidationError("--nproc-per-node must be at least 1") }
        guard let chosen = Backend(rawValue: backend) else { throw ValidationError("unknown --backend '\(backend)'; choose gloo or mpi") }
        if chosen == .mpi && nprocPerNode > 1 {
            throw ValidationError("--backend mpi takes its processes from mpirun: run `mpirun -np \(nprocPerNode) tandem train --backend mpi ...` without --nproc-per-node")
        }
        if let dataset, dataset != "mnist-strings" {
            throw ValidationError("--model ctc-digits trains on --dataset mnist-strings, not '\(dataset)'")
        }
        guard trainStrings > 0, testStrings > 0 else { throw ValidationError("--train-strings and --test-strings must be positive") }
        guard epochs > 0 else { throw ValidationError("--epochs must be positive") }
        if let maxSteps, maxSteps <= 0 { throw ValidationError("--max-steps must be positive") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        if let lr, !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be a positive number") }
        guard weightDecay >= 0 else { throw ValidationError("--weight-decay must be ≥ 0") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if resume { throw ValidationError("--resume is not supported for ctc-digits; start a new run") }
    }

    func runCTC() throws {
        let group = try startDistributed()
        defer { group?.destroy() }
        let rank = group?.rank ?? 0, worldSize = group?.worldSize ?? 1

        let folder = dataDir ?? "Data/mnist"
        let loadStart = Date()
        let train = try MNISTStrings(folder: folder, train: true, count: trainStrings, seed: seed)
        let test = try MNISTStrings(folder: folder, train: false, count: testStrings, seed: seed &+ 1)
        let loadSeconds = Date().timeIntervalSince(loadStart)

        let model = CTCDigitRecognizer(generator: Generator(seed: seed))
        var network: any Module = model
        if let group {
            if syncBn { network = try convertSyncBatchNorm(network, processGroup: group) }
            network = try DistributedDataParallel(network, processGroup: group)
        }
        let rate = lr ?? 3e-3
        let optimizer = try Adam(network.parameters(), lr: rate, weightDecay: weightDecay, decoupled: true)
        var config = CTCTrainConfig()
        config.epochs = epochs
        config.maxSteps = maxSteps
        config.batchSize = batchSize
        config.seed = seed
        config.outDir = out
        config.showProgress = !json
        config.processGroup = group
        let probe = CTCTrainer(model: model, network: network, optimizer: optimizer, schedule: nil, train: train, test: test, config: config)
        let totalSteps = Swift.min(maxSteps ?? Int.max, epochs * probe.stepsPerEpoch)
        let schedule: (any LRSchedule)? = (Self.given("--scheduler") && scheduler != "cosine") ? nil
            : try CosineAnnealingLR(optimizer, tMax: Swift.max(totalSteps, 1))
        let trainer = CTCTrainer(model: model, network: network, optimizer: optimizer, schedule: schedule,
                                 train: train, test: test, config: config)
        if !json && rank == 0 {
            let parameters = model.parameters().reduce(0) { $0 + $1.value.count }
            print(String(format: "ctc-digits: %d parameters; %d train / %d test strings (%.1f s to index); %d steps of %d on %d rank(s), lr %g",
                         parameters, train.count, test.count, loadSeconds, totalSteps, batchSize, worldSize, rate))
        }
        let result = try trainer.fit()
        guard rank == 0 else { return }
        let e = result.evaluation
        func round4(_ x: Double?) -> Double? { x.map { ($0 * 10_000).rounded() / 10_000 } }
        if json {
            var object: [String: Any] = [
                "model": "ctc-digits", "dataset": "mnist-strings", "world_size": worldSize, "epochs": result.epochs,
                "steps": result.steps, "batch_size": batchSize, "lr": rate, "threads": Tandem.numThreads,
                "train_strings": train.count, "test_strings": test.count, "beam_width": config.beamWidth,
                "train_strings_per_second": (result.stringsPerSecond * 10).rounded() / 10,
                "wall_seconds": (result.wallSeconds * 100).rounded() / 100,
            ]
            object["train_loss"] = round4(result.trainLoss)
            object["test_loss"] = round4(e?.loss)
            object["greedy_sequence_accuracy"] = round4(e?.greedy.sequenceAccuracy)
            object["greedy_cer"] = round4(e?.greedy.characterErrorRate)
            object["beam_sequence_accuracy"] = round4(e?.beam.sequenceAccuracy)
            object["beam_cer"] = round4(e?.beam.characterErrorRate)
            object["checkpoint"] = result.checkpointPath
            try printJSON(object)
        } else {
            print(String(format: "trained %d steps (%d epochs), %.0f strings/s, %.1f s", result.steps, result.epochs,
                         result.stringsPerSecond, result.wallSeconds))
            if let e {
                print(String(format: "test: greedy sequence accuracy %.4f, CER %.4f; beam (width %d) sequence accuracy %.4f, CER %.4f; loss %.4f",
                             e.greedy.sequenceAccuracy, e.greedy.characterErrorRate, config.beamWidth,
                             e.beam.sequenceAccuracy, e.beam.characterErrorRate, e.loss))
            }
            if let path = result.checkpointPath { print("checkpoint: \(path)") }
        }
    }
}
