import Foundation
import Testing
import TandemDistributed
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel

/// The zoo's models under DDP on 2 ranks equal one process on the global batch.
@Suite(.serialized) struct ZooParityTests {
    func parity(makeModel: @escaping @Sendable () -> any Module, inputShape: [Int], classes: Int, steps: Int, lr: Double = 0.05) throws {
        let globalBatch = 8
        @Sendable func batch(_ step: Int) -> (Tensor, Tensor) {
            let g = Generator(seed: UInt64(500 + step))
            return (Tensor.randn([globalBatch] + inputShape, generator: g), Tensor(int64: (0..<globalBatch).map { _ in Int(g.next() % UInt64(classes)) }))
        }
        try parity(makeModel: makeModel, batch: batch, steps: steps, lr: lr)
    }

    /// The global batch of each step is 8 examples (`batch(step)`); rank r trains on rows 4r..<4r+4.
    func parity(makeModel: @escaping @Sendable () -> any Module, batch: @escaping @Sendable (Int) -> (Tensor, Tensor),
                steps: Int, lr: Double = 0.05) throws {
        let single = makeModel()
        let opt = try SGD(single.parameters(), lr: lr, momentum: 0.9)
        for step in 0..<steps {
            let (x, y) = batch(step)
            opt.zeroGrad()
            try Tensor.crossEntropy(single(x), target: y).backward()
            try opt.step()
        }
        let expected = single.stateDict()
        let box = StateBox()
        try runRanks(2) { rank, group in
            let ddp = try DistributedDataParallel(makeModel(), processGroup: group)
            let o = try SGD(ddp.parameters(), lr: lr, momentum: 0.9)
            for step in 0..<steps {
                let (x, y) = batch(step)
                let xs = try x.narrow(axis: 0, start: rank * 4, length: 4), ys = try y.narrow(axis: 0, start: rank * 4, length: 4)
                o.zeroGrad()
                try Tensor.crossEntropy(ddp(xs), target: ys).backward()
                try ddp.synchronize()
                try o.step()
            }
            box.lock.lock(); box.states.append(ddp.stateDict()); box.lock.unlock()
        }
        for state in box.states {
            for ((name, a), (_, b)) in zip(state, expected) {
                let diff = zip(a.toDoubleArray(), b.toDoubleArray()).map { Swift.abs($0 - $1) }.max() ?? 0
                #expect(diff <= 1e-4, "\(name): \(diff)")
            }
        }
    }

    @Test func kan() throws {
        try parity(makeModel: { KAN([6, 5, 3], generator: Generator(seed: 9)) }, inputShape: [6], classes: 3, steps: 10)
    }

    @Test func mamba2LM() throws {
        var config = Mamba2LM.Config()
        (config.vocabSize, config.dModel, config.nLayers, config.dState, config.headdim, config.chunkSize) = (13, 8, 2, 4, 4, 4)
        let sizes = config
        @Sendable func batch(_ step: Int) -> (Tensor, Tensor) {
            let g = Generator(seed: UInt64(700 + step))
            let tokens = Tensor(int64: (0..<8 * 11).map { _ in Int(g.next() % 13) }, shape: [8, 11])
            return (try! tokens.narrow(axis: 1, start: 0, length: 10), try! tokens.narrow(axis: 1, start: 1, length: 10))
        }
        try parity(makeModel: { ClassFirstLogits(Mamba2LM(sizes, generator: Generator(seed: 9))) }, batch: batch, steps: 3, lr: 0.05)
    }

    @Test func mambaOut() throws {
        try parity(makeModel: { MambaOut(.init(depths: [1, 1, 1, 1], dims: [4, 8, 8, 8]), inChannels: 1, numClasses: 3,
                                         generator: Generator(seed: 9)) },
                   inputShape: [1, 16, 16], classes: 3, steps: 3, lr: 0.01)
    }
}
