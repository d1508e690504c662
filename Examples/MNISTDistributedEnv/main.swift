// MNIST with DistributedDataParallel and `env://` initialisation: the seed's mnist-env.py in
// Swift. A launcher starts the processes and gives each its RANK, WORLD_SIZE, MASTER_ADDR and
// MASTER_PORT (and LOCAL_RANK) in the environment, like torch.distributed.launch or torchrun;
// the program is the tcp:// one with only the initialisation changed. Changes from the
// single-process program, as
// the seed numbers them: N1 init the process group, N2 (SyncBatchNorm +) DDP + GradScaler,
// N3 DistributedSampler, N4 setEpoch, N5 autocast, N6 scaled backward, N7 print on rank 0,
// N8 destroy the group; N9–N11 parallel evaluation with the counts summed over ranks.
//
//   swift build -c release
//   .build/release/tandem run --nproc-per-node 2 -- .build/release/mnist-ddp-env --epochs 1
//   .build/release/tandem run --nproc-per-node 2 -- .build/release/mnist-ddp-env --epochs 1 --amp bf16
//   # two machines with two processes each (GLOO_SOCKET_IFNAME=eth0 if needed):
//   tandem run --nnodes 2 --node-rank 0 --master-addr IP0 --master-port 12345 --nproc-per-node 2 -- mnist-ddp-env
//   tandem run --nnodes 2 --node-rank 1 --master-addr IP0 --master-port 12345 --nproc-per-node 2 -- mnist-ddp-env
// `tandem run` also sets TANDEM_NUM_THREADS so that the processes share the cores.
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

struct MNISTDistributedEnv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mnist-ddp-env", abstract: "Train the seed's MNIST ConvNet with DDP under `tandem run`.")

    @Option(name: [.short, .long], help: "Number of epochs.") var epochs = 1
    @Option(name: [.short, .long], help: "Batch size per process.") var batchSize = 64
    @Option(help: "Learning rate of SGD (momentum 0.9).") var lr = 0.01
    @Option(help: "Folder holding the MNIST IDX files.") var dataDir = "Data/mnist"
    @Option(help: "Mixed precision: bf16 or fp16.") var amp: Precision?
    @Option(help: "Stop after this many steps (for quick runs).") var maxSteps: Int?
    @Option(help: "Print the loss every this many steps.") var logEvery = 100
    @Option(help: "Where rank 0 saves the trained weights.") var out = "mnist_ddp.safetensors"
    @Flag(help: "Convert BatchNorm to SyncBatchNorm, as the seed does (N2).") var syncBn = false

    func run() throws {
        // N1: join the process group; rank, world size and the master's address come from the environment.
        let group = try initProcessGroup(backend: .gloo, initMethod: "env://")
        let localRank = ProcessInfo.processInfo.environment["LOCAL_RANK"] ?? "0"
        print("rank \(group.rank) of \(group.worldSize), local_rank \(localRank)")
        defer { group.destroy() }   // N8
        // N2: with --sync-bn, BatchNorm statistics over all ranks (two all-reduces per BatchNorm
        // layer and step; on 2 cores it halved this model's throughput); then DDP, which
        // broadcasts rank 0's weights to every rank.
        var net: any Module = ConvNet()
        if syncBn { net = try convertSyncBatchNorm(net, processGroup: group) }
        let model = try DistributedDataParallel(net, processGroup: group)
        let criterion = CrossEntropyLoss()
        let optimizer = try SGD(model.parameters(), lr: lr, momentum: 0.9)
        // The skip decision of the float16 loss scaler is all-reduced, so every rank skips alike.
        let scaler = try GradScaler(enabled: amp == .fp16, processGroup: group)

        // N3: each rank reads its own shard; shuffling is the sampler's job.
        let trainDataset = try MNIST(folder: dataDir, train: true)
        let trainSampler = try DistributedSampler(count: trainDataset.count, numReplicas: group.worldSize, rank: group.rank)
        let trainLoader = try DataLoader(trainDataset, batchSize: batchSize, sampler: trainSampler)
        // N9: the test shards are disjoint and unpadded, so every test image counts exactly once.
        let testDataset = try MNIST(folder: dataDir, train: false)
        let testSampler = try DistributedSampler(count: testDataset.count, numReplicas: group.worldSize, rank: group.rank,
                                                 shuffle: false, padding: false)
        let testLoader = try DataLoader(testDataset, batchSize: 1000, sampler: testSampler)

        let start = Date()
        let totalStep = trainLoader.count   // the dataset length divided by the world size
        var step = 0, images = 0, trainSeconds = 0.0   // images/s counts the training loop only
        for epoch in 0..<epochs {
            trainLoader.setEpoch(epoch)     // N4: the same new shuffle on every rank
            model.train()
            let batches = trainLoader.makeIterator()
            let epochStart = Date()
            var i = 0
            while let (inputs, labels) = try batches.next() {
                // N5: forward pass under autocast when --amp is given.
                let loss = try autocast(dtype: amp?.dtype ?? .bfloat16, enabled: amp != nil) {
                    try criterion(model(inputs), labels)
                }
                optimizer.zeroGrad()
                try scaler.scale(loss).backward()   // N6: gradients are averaged over ranks during backward
                try model.synchronize()             // throws if an all-reduce failed
                try scaler.step(optimizer)
                scaler.update()
                i += 1
                step += 1
                images += inputs.shape[0]
                if i % logEvery == 0 && group.rank == 0 {   // N7
                    print(String(format: "Epoch [%d/%d], Step [%d/%d], Loss: %.4f", epoch + 1, epochs, i, totalStep, try loss.item()))
                }
                if step == maxSteps { break }
            }
            trainSeconds += Date().timeIntervalSince(epochStart)
            try evaluate(model, testLoader, group: group)   // N10
            if step == maxSteps { break }
        }
        let seconds = Date().timeIntervalSince(start)
        let allImages = try DistributedMetrics.sum([Double(images)], group: group)[0]
        if group.rank == 0 {
            print(String(format: "Training complete in: %.1f s (%d steps, %.0f train images/s on %d processes)",
                         seconds, step, allImages / trainSeconds, group.worldSize))
            // The inner model's state: PyTorch's names, no `module.` prefix.
            try SafeTensors.save(model.stateDict(), metadata: ["format": "pt"], to: out)
            print("saved \(out)")
        }
    }

    /// N11: each rank evaluates its shard; the correct and total counts are summed over ranks.
    func evaluate(_ model: DistributedDataParallel, _ loader: DataLoader<MNIST>, group: any ProcessGroup) throws {
        model.eval()
        defer { model.train() }
        var correct = 0, size = 0
        try Tensor.withNoGrad {
            try loader.forEach { inputs, labels in
                let outputs = try autocast(dtype: amp?.dtype ?? .bfloat16, enabled: amp != nil) { try model(inputs) }
                correct += try Int(outputs.argmax(axis: 1).eq(labels).to(.float32).sum().item())
                size += labels.shape[0]
            }
        }
        let sums = try DistributedMetrics.sum([Double(size), Double(correct)], group: group)
        if group.rank == 0 {
            print(String(format: "Evaluate accuracy is %.4f (%.0f test images)", sums[1] / sums[0], sums[0]))
        }
    }
}

MNISTDistributedEnv.main()
