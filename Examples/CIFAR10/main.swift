// CIFAR-10 with the seed's ToyModel: DP_main.py (one process) and DDP_main.py (under a
// launcher) in Swift. RandomCrop(32, padding 4), RandomHorizontalFlip, ToTensor, Normalize;
// SGD(lr 0.1, momentum 0.9, weight decay 5e-4) with StepLR(step 1, gamma 0.1); the running loss
// and accuracy every 500 steps; a checkpoint per epoch (`0.safetensors`, `1.safetensors`, ...,
// PyTorch's names) and the learning rate printed before the scheduler steps. Started by
// `tandem run` (WORLD_SIZE is set), it trains with DistributedDataParallel: a DistributedSampler
// with setEpoch, output and checkpoints on rank 0 only, test counts summed over ranks.
//
//   swift build -c release
//   .build/release/cifar10 --download --epochs 2        # fetches the binary CIFAR-10 into Data/ once
//   .build/release/cifar10 --epochs 2 --amp bf16        # forward pass under autocast(bfloat16)
//   .build/release/tandem run --nproc-per-node 2 -- .build/release/cifar10 --epochs 2
import ArgumentParser
import Foundation
import TandemData
import TandemDistributed
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel

/// `--amp bf16|fp16`: the dtype of the autocast region.
enum Precision: String, ExpressibleByArgument {
    case bf16, fp16
    var dtype: DType { self == .bf16 ? .bfloat16 : .float16 }
}

struct CIFAR10Example: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cifar10", abstract: "Train the seed's CIFAR-10 ToyModel.")

    @Option(name: [.short, .long], help: "Number of epochs.") var epochs = 2
    @Option(name: [.short, .long], help: "Batch size (per process under DDP).") var batchSize = 16
    @Option(help: "Initial learning rate (×0.1 after every epoch).") var lr = 0.1
    @Option(help: "The cifar-10-batches-bin folder.") var dataDir = "Data/cifar-10-batches-bin"
    @Flag(help: "Download and unpack CIFAR-10 into the parent of --data-dir if it is missing.") var download = false
    @Option(help: "Background threads preparing batches.") var numWorkers = 2
    @Option(help: "Mixed precision: bf16 or fp16.") var amp: Precision?
    @Option(help: "Stop after this many steps (for quick runs).") var maxSteps: Int?
    @Option(help: "Print the running loss and accuracy every this many steps.") var logEvery = 500
    @Option(help: "Folder for the per-epoch checkpoints.") var outDir = "runs/cifar10"

    func run() throws {
        // DDP when a launcher started us (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT are set).
        let launched = ProcessInfo.processInfo.environment["WORLD_SIZE"] != nil
        let group = launched ? try initProcessGroup(backend: .gloo, initMethod: "env://") : nil
        defer { group?.destroy() }
        let rank = group?.rank ?? 0
        if download && rank == 0 && !FileManager.default.fileExists(atPath: dataDir + "/data_batch_1.bin") {
            try CIFAR10.download(to: URL(fileURLWithPath: dataDir).deletingLastPathComponent().path)
        }
        try group?.barrier()   // the other ranks wait for rank 0's download

        let net = CIFARToyModel()
        let ddp = try group.map { try DistributedDataParallel(net, processGroup: $0) }
        let model: any Module = ddp ?? net
        let lossFunction = CrossEntropyLoss()
        let optimizer = try SGD(model.parameters(), lr: lr, momentum: 0.9, weightDecay: 5e-4)
        let scheduler = try StepLR(optimizer, stepSize: 1, gamma: 0.1)
        let scaler = try group.map { try GradScaler(enabled: amp == .fp16, processGroup: $0) } ?? GradScaler(enabled: amp == .fp16)

        let trainset = try CIFAR10(folder: dataDir, train: true)     // the seed's training transform
        let testset = try CIFAR10(folder: dataDir, train: false)     // ToTensor + Normalize
        let trainSampler = try group.map { try DistributedSampler(count: trainset.count, numReplicas: $0.worldSize, rank: $0.rank) }
        let testSampler = try group.map {
            try DistributedSampler(count: testset.count, numReplicas: $0.worldSize, rank: $0.rank, shuffle: false, padding: false)
        }
        // sampler and shuffle are mutually exclusive: under DDP the sampler shuffles.
        let trainloader = try DataLoader(trainset, batchSize: batchSize, shuffle: trainSampler == nil, sampler: trainSampler,
                                         numWorkers: numWorkers)
        let testloader = try DataLoader(testset, batchSize: 500, sampler: testSampler, numWorkers: numWorkers)
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)

        let start = Date()
        var step = 0, images = 0, trainSeconds = 0.0   // images/s counts the training loop only
        for epoch in 0..<epochs {
            trainloader.setEpoch(epoch)   // a new shuffle (and new random crops) every epoch
            model.train()
            var trainLoss = 0.0, correct = 0, total = 0, batchIndex = 0
            let batches = trainloader.makeIterator()
            let epochStart = Date()
            while let (inputs, targets) = try batches.next() {
                let (outputs, loss) = try autocast(dtype: amp?.dtype ?? .bfloat16, enabled: amp != nil) {
                    let outputs = try model(inputs)
                    return (outputs, try lossFunction(outputs, targets))
                }
                optimizer.zeroGrad()
                try scaler.scale(loss).backward()
                try ddp?.synchronize()
                try scaler.step(optimizer)
                scaler.update()
                trainLoss += try loss.item()
                total += targets.shape[0]
                correct += try Int(outputs.argmax(axis: 1).eq(targets).to(.float32).sum().item())
                batchIndex += 1
                step += 1
                images += targets.shape[0]
                if batchIndex % logEvery == 0 && rank == 0 {
                    print(String(format: "epoch: %d | Loss: %.3f | Acc: %.3f%% (%d/%d)",
                                 epoch, trainLoss / Double(batchIndex), 100 * Double(correct) / Double(total), correct, total))
                }
                if step == maxSteps { break }
            }
            trainSeconds += Date().timeIntervalSince(epochStart)
            let accuracy = try evaluate(model, testloader, group: group)
            if rank == 0 {
                print(String(format: "epoch: %d | test accuracy: %.2f%%", epoch, 100 * accuracy))
                try SafeTensors.save(net.stateDict(), metadata: ["format": "pt"], to: "\(outDir)/\(epoch).safetensors")
                print("lr:", optimizer.learningRate)
            }
            scheduler.step()
            if step == maxSteps { break }
        }
        let seconds = Date().timeIntervalSince(start)
        let allImages = try DistributedMetrics.sum([Double(images)], group: group)[0]
        if rank == 0 {
            print(String(format: "Training complete in: %.1f s (%d steps, %.0f train images/s, world size %d)",
                         seconds, step, allImages / trainSeconds, group?.worldSize ?? 1))
        }
    }

    /// Test accuracy; under DDP each rank evaluates its shard and the counts are summed.
    func evaluate(_ model: any Module, _ loader: DataLoader<CIFAR10>, group: (any ProcessGroup)?) throws -> Double {
        model.eval()
        defer { model.train() }
        var correct = 0, total = 0
        try Tensor.withNoGrad {
            try loader.forEach { inputs, targets in
                let outputs = try autocast(dtype: amp?.dtype ?? .bfloat16, enabled: amp != nil) { try model(inputs) }
                correct += try Int(outputs.argmax(axis: 1).eq(targets).to(.float32).sum().item())
                total += targets.shape[0]
            }
        }
        return try DistributedMetrics.accuracy(correct: correct, total: total, group: group)
    }
}

CIFAR10Example.main()
