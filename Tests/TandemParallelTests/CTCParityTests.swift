import Foundation
import Testing
import TandemDistributed
import TandemModels
import TandemNN
import TandemOptim
import TandemParallel

/// The CTC digit recogniser under DDP on 2 ranks (SyncBatchNorm, the CTC loss `.mean` on each
/// rank's half of the batch) equals one process on the global batch.
@Suite(.serialized) struct CTCParityTests {
    static func model() -> CTCDigitRecognizer {
        CTCDigitRecognizer(channels: (4, 8), dModel: 16, dState: 8, headdim: 8, chunkSize: 8, generator: Generator(seed: 9))
    }

    static func batch(_ step: Int) -> (Tensor, Tensor) {
        let g = Generator(seed: UInt64(700 + step))
        let x = Tensor.randn([8, 1, 28, 48], generator: g)
        return (x, Tensor(int64: (0..<16).map { _ in 1 + Int(g.next() % 10) }, shape: [8, 2]))
    }

    static func loss(_ logProbs: Tensor, _ targets: Tensor) throws -> Tensor {
        let n = targets.shape[0]
        return try Tensor.ctcLoss(logProbs: logProbs, targets: targets, inputLengths: [Int](repeating: 12, count: n),
                                  targetLengths: [Int](repeating: 2, count: n))
    }

    @Test func twoRanksEqualOneProcess() throws {
        let steps = 3
        let single = Self.model()
        let opt = try SGD(single.parameters(), lr: 0.05, momentum: 0.9)
        for step in 0..<steps {
            let (x, y) = Self.batch(step)
            opt.zeroGrad()
            try Self.loss(single(x), y).backward()
            try opt.step()
        }
        let expected = single.stateDict()
        let box = StateBox()
        try runRanks(2) { rank, group in
            let ddp = try DistributedDataParallel(convertSyncBatchNorm(Self.model(), processGroup: group), processGroup: group)
            let o = try SGD(ddp.parameters(), lr: 0.05, momentum: 0.9)
            for step in 0..<steps {
                let (x, y) = Self.batch(step)
                o.zeroGrad()
                let xs = try x.narrow(axis: 0, start: rank * 4, length: 4), ys = try y.narrow(axis: 0, start: rank * 4, length: 4)
                try Self.loss(ddp(xs), ys).backward()
                try ddp.synchronize()
                try o.step()
            }
            box.lock.lock(); box.states.append(ddp.stateDict()); box.lock.unlock()
        }
        #expect(box.states.count == 2)
        for state in box.states {
            #expect(state.map(\.0) == expected.map(\.0))
            for ((name, a), (_, b)) in zip(state, expected) {
                let diff = zip(a.toDoubleArray(), b.toDoubleArray()).map { Swift.abs($0 - $1) }.max() ?? 0
                #expect(diff <= 1e-4, "\(name): \(diff)")
            }
        }
    }
}
