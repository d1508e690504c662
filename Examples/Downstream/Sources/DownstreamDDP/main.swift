// The seed's DDP MNIST program in a package of its own, with one import. Run it under the
// launcher (from the repository root):
//
//   swift build --package-path Examples/Downstream
//   .build/debug/tandem run --nproc-per-node 2 -- Examples/Downstream/.build/debug/DownstreamDDP --max-steps 20
//
// Arguments: --data-dir DIR (default Data/mnist), --max-steps N (default: one epoch).
import Foundation
import Tandem

let arguments = CommandLine.arguments
func option(_ name: String) -> String? {
    arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
}
let dataDir = option("--data-dir") ?? "Data/mnist"
let maxSteps = option("--max-steps").flatMap(Int.init)

do {
    // One process per rank; `tandem run` sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
    let group = try initProcessGroup(backend: .gloo, initMethod: "env://")
    defer { group.destroy() }
    let model = try DistributedDataParallel(ConvNet(), processGroup: group)
    let optimizer = try SGD(model.parameters(), lr: 0.01, momentum: 0.9)
    let train = try MNIST(folder: dataDir, train: true)
    let sampler = try DistributedSampler(count: train.count, numReplicas: group.worldSize, rank: group.rank)
    let loader = try DataLoader(train, batchSize: 64, sampler: sampler)
    loader.setEpoch(0)
    var step = 0, lastLoss = 0.0
    let batches = loader.makeIterator()
    while let (x, y) = try batches.next() {
        optimizer.zeroGrad()
        let loss = try Tensor.crossEntropy(model(x), target: y)
        try loss.backward()
        try model.synchronize()
        try optimizer.step()
        step += 1
        lastLoss = try loss.item()
        if step == maxSteps { break }
    }
    if group.rank == 0 {
        print("downstream DDP: \(step) steps on \(group.worldSize) processes (\(Tandem.numThreads) threads each), loss \(lastLoss)")
    }
} catch {
    FileHandle.standardError.write(Data("downstream DDP: \(error)\n".utf8))
    exit(1)
}
