import Dispatch
import Foundation
import Testing
import TandemDistributed
import TandemNN
import TandemOptim
import TandemParallel
import TandemData
import TandemTestSupport

/// Runs `body(rank, group)` on one thread per rank of an in-process world; rethrows the first error.
func runRanks(_ worldSize: Int, timeout: Duration = .seconds(60), _ body: @escaping @Sendable (Int, any ProcessGroup) throws -> Void) throws {
    let groups = try InProcessGroup.makeWorld(worldSize: worldSize, timeout: timeout)
    final class Errors: @unchecked Sendable { var list: [any Error] = []; let lock = NSLock() }
    let errors = Errors()
    let done = DispatchGroup()
    for rank in 0..<worldSize {
        done.enter()
        let group = groups[rank]
        Thread {
            do { try body(rank, group) } catch { errors.lock.lock(); errors.list.append(error); errors.lock.unlock() }
            done.leave()
        }.start()
    }
    guard done.wait(timeout: .now() + 120) == .success else { throw DataParallelError.invalidArgument("ranks did not finish") }
    if let first = errors.list.first { throw first }
}

/// A small conv net with BatchNorm: [N, 1, 8, 8] → [N, 3].
func smallNet(seed: UInt64, batchNorm: Bool = true) -> Sequential {
    let g = Generator(seed: seed)
    var layers: [any Module] = [Conv2d(1, 4, kernelSize: 3, padding: 1, generator: g)]
    if batchNorm { layers.append(BatchNorm2d(4)) }
    layers += [ReLU(), MaxPool2d(kernelSize: 2), Flatten(), Linear(4 * 4 * 4, 3, generator: g)]
    return Sequential(layers)
}

/// Fixed data: `count` images and labels.
func fixedBatch(_ count: Int, seed: UInt64) -> (Tensor, Tensor) {
    let g = Generator(seed: seed)
    let x = Tensor.randn([count, 1, 8, 8], generator: g)
    let y = Tensor(int64: (0..<count).map { _ in Int(g.next() % 3) })
    return (x, y)
}

final class StateBox: @unchecked Sendable { var states: [[(String, Tensor)]] = [] ; let lock = NSLock() }

@Suite(.serialized) struct DDPParityTests {
    /// Single-process reference: `steps` SGD steps on the whole global batch.
    func reference(steps: Int, globalBatch: Int, batchNorm: Bool) throws -> [(String, Tensor)] {
        let model = smallNet(seed: 5, batchNorm: batchNorm)
        let opt = try SGD(model.parameters(), lr: 0.05, momentum: 0.9)
        for step in 0..<steps {
            let (x, y) = fixedBatch(globalBatch, seed: UInt64(100 + step))
            opt.zeroGrad()
            try Tensor.crossEntropy(model(x), target: y).backward()
            try opt.step()
        }
        return model.stateDict()
    }

    func compare(_ a: [(String, Tensor)], _ b: [(String, Tensor)], tolerance: Double) {
        for ((name, x), (_, y)) in zip(a, b) {
            let diff = zip(x.toDoubleArray(), y.toDoubleArray()).map { Swift.abs($0 - $1) }.max() ?? 0
            #expect(diff <= tolerance, "\(name): max abs difference \(diff)")
        }
    }

    @Test(arguments: [2, 4]) func syncBatchNormDDPMatchesOneProcess(worldSize: Int) throws {
        let steps = 30, globalBatch = 64
        let expected = try reference(steps: steps, globalBatch: globalBatch, batchNorm: true)
        let box = StateBox()
        try runRanks(worldSize) { rank, group in
            // Different initial weights on other ranks: DDP must broadcast rank 0's.
            let inner = try convertSyncBatchNorm(smallNet(seed: rank == 0 ? 5 : 77), processGroup: group)
            let ddp = try DistributedDataParallel(inner, processGroup: group, bucketCapMB: 0.0005)
            let opt = try SGD(ddp.parameters(), lr: 0.05, momentum: 0.9)
            let per = globalBatch / worldSize
            for step in 0..<steps {
                let (x, y) = fixedBatch(globalBatch, seed: UInt64(100 + step))
                let xs = try x.narrow(axis: 0, start: rank * per, length: per)
                let ys = try y.narrow(axis: 0, start: rank * per, length: per)
                opt.zeroGrad()
                try Tensor.crossEntropy(ddp(xs), target: ys).backward()
                try ddp.synchronize()
                try opt.step()
            }
            box.lock.lock(); box.states.append(ddp.stateDict()); box.lock.unlock()
        }
        #expect(box.states.count == worldSize)
        for state in box.states { compare(state, expected, tolerance: 1e-4) }
    }

    @Test func noSyncAccumulationMatchesOneProcess() throws {
        let steps = 10, globalBatch = 64
        let expected = try reference(steps: steps, globalBatch: globalBatch, batchNorm: false)
        let box = StateBox()
        try runRanks(2) { rank, group in
            let ddp = try DistributedDataParallel(smallNet(seed: 5, batchNorm: false), processGroup: group)
            let opt = try SGD(ddp.parameters(), lr: 0.05, momentum: 0.9)
            for step in 0..<steps {
                let (x, y) = fixedBatch(globalBatch, seed: UInt64(100 + step))
                let micro = try (0..<2).map { m -> (Tensor, Tensor) in
                    let start = rank * 32 + m * 16
                    return (try x.narrow(axis: 0, start: start, length: 16), try y.narrow(axis: 0, start: start, length: 16))
                }
                opt.zeroGrad()
                try ddp.noSync { try (Tensor.crossEntropy(ddp(micro[0].0), target: micro[0].1) / 2).backward() }
                try (Tensor.crossEntropy(ddp(micro[1].0), target: micro[1].1) / 2).backward()
                try ddp.synchronize()
                try opt.step()
            }
            box.lock.lock(); box.states.append(ddp.stateDict()); box.lock.unlock()
        }
        for state in box.states { compare(state, expected, tolerance: 1e-4) }
    }

    @Test func unusedParametersAreFoundOrNamed() throws {
        final class TwoHeads: Module {
            let used = Linear(4, 2, generator: Generator(seed: 1)), unused = Linear(4, 2, generator: Generator(seed: 2))
            var isTraining = true
            var children: [(String, any Module)] { [("used", used), ("unused", unused)] }
            func callAsFunction(_ input: Tensor) throws -> Tensor { try used(input) }
        }
        try runRanks(2) { rank, group in
            let x = Tensor.randn([3, 4], generator: Generator(seed: UInt64(rank)))
            let found = try DistributedDataParallel(TwoHeads(), processGroup: group, findUnusedParameters: true)
            try found(x).sum().backward()
            try found.synchronize()
            #expect(found.module.namedParameters().filter { $0.0.hasPrefix("used") }.allSatisfy { $0.1.grad != nil })
            let strict = try DistributedDataParallel(TwoHeads(), processGroup: group)
            try strict(x).sum().backward()
            #expect { try strict.synchronize() } throws: { "\($0)".contains("unused.weight") && "\($0)".contains("findUnusedParameters") }
        }
    }

    @Test func largeModelSpansManyBucketsAndAveragesExactly() throws {
        let box = StateBox()
        try runRanks(2) { rank, group in
            let model = Sequential(Linear(300, 200, generator: Generator(seed: 3)), ReLU(), Linear(200, 10, generator: Generator(seed: 4)))
            let ddp = try DistributedDataParallel(model, processGroup: group, bucketCapMB: 0.05)  // ~13k floats per bucket
            let x = Tensor.randn([4, 300], generator: Generator(seed: UInt64(10 + rank)))
            try ddp(x).sum().backward()
            try ddp.synchronize()
            box.lock.lock(); box.states.append(model.namedParameters().map { ($0.0, $0.1.grad!) }); box.lock.unlock()
        }
        // Reference: the mean of both ranks' local gradients.
        var local: [[(String, Tensor)]] = []
        for rank in 0..<2 {
            let model = Sequential(Linear(300, 200, generator: Generator(seed: 3)), ReLU(), Linear(200, 10, generator: Generator(seed: 4)))
            try model(Tensor.randn([4, 300], generator: Generator(seed: UInt64(10 + rank)))).sum().backward()
            local.append(model.namedParameters().map { ($0.0, $0.1.grad!) })
        }
        let mean = try zip(local[0], local[1]).map { ($0.0.0, try ($0.0.1 + $0.1.1) / 2) }
        for state in box.states { compare(state, mean, tolerance: 1e-6) }
    }

    /// `lastCommunicationSeconds` measures the time a rank is held in the gradient all-reduce:
    /// a rank that finishes its backward pass 0.2 s before the other one waits at least that long.
    @Test func timeInTheAllReduceIncludesWaitingForTheSlowerRank() throws {
        let waits = StateBox()
        try runRanks(2) { rank, group in
            let ddp = try DistributedDataParallel(smallNet(seed: 5), processGroup: group)
            let (x, y) = fixedBatch(8, seed: UInt64(rank))
            let loss = try Tensor.crossEntropy(ddp(x), target: y)
            if rank == 1 { Thread.sleep(forTimeInterval: 0.2) }
            try loss.backward()
            try ddp.synchronize()
            let waited = ddp.lastCommunicationSeconds
            try ddp.noSync { try Tensor.crossEntropy(ddp(x), target: y).backward() }
            waits.lock.lock()
            waits.states.append([("\(rank)", Tensor([waited, ddp.lastCommunicationSeconds], shape: [2], dtype: .float64))])
            waits.lock.unlock()
        }
        let byRank = Dictionary(uniqueKeysWithValues: waits.states.map { ($0[0].0, $0[0].1.toDoubleArray()) })
        #expect(byRank["0"]![0] >= 0.15, "rank 0 waited for rank 1: \(byRank)")
        #expect(byRank["1"]![0] < byRank["0"]![0])
        #expect(byRank["0"]![1] == 0 && byRank["1"]![1] == 0, "nothing is reduced under noSync")
    }

    @Test func differentModelsFailOnEveryRank() throws {
        #expect(throws: DataParallelError.self) {
            try runRanks(2) { rank, group in
                let model = Linear(4, rank == 0 ? 2 : 3)
                _ = try DistributedDataParallel(model, processGroup: group)
            }
        }
    }
}

@Suite struct DistributedEvaluationTests {
    @Test func threeRanksCountEveryExampleOnce() throws {
        // 100 examples (not divisible by 3); the prediction is right for multiples of 3 or 7.
        let right = (0..<100).map { $0 % 3 == 0 || $0 % 7 == 0 }
        let expected = Double(right.filter { $0 }.count) / 100
        final class Results: @unchecked Sendable { var values: [Double] = []; let lock = NSLock() }
        let results = Results()
        try runRanks(3) { rank, group in
            let sampler = try TandemData.DistributedSampler(count: 100, numReplicas: 3, rank: rank, shuffle: true, seed: 1, padding: false)
            let mine = sampler.indices(epoch: 0)
            let accuracy = try DistributedMetrics.accuracy(correct: mine.filter { right[$0] }.count, total: mine.count, group: group)
            var matrix = [Int](repeating: 0, count: 4)
            DistributedMetrics.accumulateConfusion(&matrix, classes: 2, predictions: mine.map { right[$0] ? 1 : 0 }, labels: mine.map { _ in 1 })
            let total = try DistributedMetrics.confusion(matrix, group: group)
            #expect(total.reduce(0, +) == 100)
            results.lock.lock(); results.values.append(accuracy); results.lock.unlock()
        }
        #expect(results.values == [expected, expected, expected])
    }
}
