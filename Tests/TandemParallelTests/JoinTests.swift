import Foundation
import Testing
import TandemDistributed
import TandemNN
import TandemOptim
import TandemParallel
import TandemTestSupport

/// `DistributedDataParallel.join { }` with uneven inputs, ranks as threads (InProcess backend).
@Suite(.serialized) struct JoinTests {
    static let batch = 8

    /// Rank r's batch number `step`.
    static func data(rank: Int, step: Int) -> (Tensor, Tensor) { fixedBatch(batch, seed: UInt64(1000 + 10 * rank + step)) }

    /// One process doing what PyTorch's Join gives: in iteration `step` the ranks that still
    /// have a batch contribute their gradient; the sum is divided by the world size (default)
    /// or by the number of those ranks. The parameters are those of the last rank to finish,
    /// which stepped in every iteration.
    func reference(counts: [Int], divideByInitialWorldSize: Bool) throws -> [(String, Tensor)] {
        let model = smallNet(seed: 5, batchNorm: false)
        let opt = try SGD(model.parameters(), lr: 0.05, momentum: 0.9)
        for step in 0..<counts.max()! {
            let active = counts.indices.filter { step < counts[$0] }
            opt.zeroGrad()
            var total: Tensor?
            for r in active {
                let (x, y) = Self.data(rank: r, step: step)
                let loss = try Tensor.crossEntropy(model(x), target: y)
                total = try total.map { try $0 + loss } ?? loss
            }
            try (total! / Double(divideByInitialWorldSize ? counts.count : active.count)).backward()
            try opt.step()
        }
        return model.stateDict()
    }

    func train(counts: [Int], divideByInitialWorldSize: Bool = true, batchNorm: Bool = false) throws -> [[(String, Tensor)]] {
        let box = StateBox()
        try runRanks(counts.count, timeout: .seconds(30)) { rank, group in
            // Different initial weights elsewhere: DDP takes rank 0's.
            let ddp = try DistributedDataParallel(smallNet(seed: rank == 0 ? 5 : 77, batchNorm: batchNorm), processGroup: group,
                                                  bucketCapMB: 0.0005)
            let opt = try SGD(ddp.parameters(), lr: 0.05, momentum: 0.9)
            try ddp.join(divideByInitialWorldSize: divideByInitialWorldSize) {
                for step in 0..<counts[rank] {
                    let (x, y) = Self.data(rank: rank, step: step)
                    opt.zeroGrad()
                    try Tensor.crossEntropy(ddp(x), target: y).backward()
                    try ddp.synchronize()
                    try opt.step()
                }
                // Evaluation passes inside join do not communicate.
                ddp.eval()
                _ = try Tensor.withNoGrad { try ddp(Self.data(rank: rank, step: 0).0) }
                ddp.train()
            }
            box.lock.lock(); box.states.append(ddp.stateDict()); box.lock.unlock()
        }
        return box.states
    }

    func maxDifference(_ a: [(String, Tensor)], _ b: [(String, Tensor)]) -> Double {
        zip(a, b).map { x, y in zip(x.1.toDoubleArray(), y.1.toDoubleArray()).map { Swift.abs($0 - $1) }.max() ?? 0 }.max() ?? 0
    }

    @Test func threeAndFiveBatchesMatchPyTorchJoin() throws {
        let counts = [3, 5]
        let expected = try reference(counts: counts, divideByInitialWorldSize: true)
        let states = try train(counts: counts)
        #expect(states.count == 2)
        for state in states { #expect(maxDifference(state, expected) <= 1e-5) }
        // Dividing by the ranks still active is a different result.
        let other = try reference(counts: counts, divideByInitialWorldSize: false)
        #expect(maxDifference(other, expected) > 1e-4)
    }

    @Test func divideByActiveRanks() throws {
        let counts = [3, 5]
        let expected = try reference(counts: counts, divideByInitialWorldSize: false)
        for state in try train(counts: counts, divideByInitialWorldSize: false) { #expect(maxDifference(state, expected) <= 1e-5) }
    }

    @Test func threeRanksOneWithoutDataAndBatchNorm() throws {
        // Rank 0 has no batch at all (so buffers come from an active rank), rank 1 two, rank 2 five.
        let counts = [0, 2, 5]
        let expected = try reference(counts: counts, divideByInitialWorldSize: true)
        #expect(try train(counts: counts).allSatisfy { maxDifference($0, expected) <= 1e-5 })
        let states = try train(counts: counts, batchNorm: true)
        #expect(states.count == 3)
        for state in states.dropFirst() { #expect(maxDifference(state, states[0]) == 0) }
    }

    @Test func evenInputsAreUnchanged() throws {
        let counts = [4, 4]
        let expected = try reference(counts: counts, divideByInitialWorldSize: true)
        for state in try train(counts: counts) { #expect(maxDifference(state, expected) <= 1e-5) }
    }

    @Test func noSyncAccumulationUnderJoin() throws {
        // Each step accumulates two micro-batches (the first under noSync); rank 0 has 2 steps,
        // rank 1 has 4. The finished rank shadows only the synchronised backward passes.
        let counts = [2, 4]
        let model = smallNet(seed: 5, batchNorm: false)
        let opt = try SGD(model.parameters(), lr: 0.05, momentum: 0.9)
        for step in 0..<4 {
            opt.zeroGrad()
            var total: Tensor?
            for r in 0..<2 where step < counts[r] {
                for m in 0..<2 {
                    let (x, y) = Self.data(rank: r, step: 2 * step + m)
                    let loss = try Tensor.crossEntropy(model(x), target: y) / 2
                    total = try total.map { try $0 + loss } ?? loss
                }
            }
            try (total! / 2).backward()
            try opt.step()
        }
        let expected = model.stateDict()
        let box = StateBox()
        try runRanks(2, timeout: .seconds(30)) { rank, group in
            let ddp = try DistributedDataParallel(smallNet(seed: 5, batchNorm: false), processGroup: group, bucketCapMB: 0.0005)
            let opt = try SGD(ddp.parameters(), lr: 0.05, momentum: 0.9)
            try ddp.join {
                for step in 0..<counts[rank] {
                    opt.zeroGrad()
                    let (x0, y0) = Self.data(rank: rank, step: 2 * step), (x1, y1) = Self.data(rank: rank, step: 2 * step + 1)
                    try ddp.noSync { try (Tensor.crossEntropy(ddp(x0), target: y0) / 2).backward() }
                    try (Tensor.crossEntropy(ddp(x1), target: y1) / 2).backward()
                    try ddp.synchronize()
                    try opt.step()
                }
            }
            box.lock.lock(); box.states.append(ddp.stateDict()); box.lock.unlock()
        }
        for state in box.states { #expect(maxDifference(state, expected) <= 1e-5) }
    }

    @Test func syncBatchNormCannotJoin() throws {
        try runRanks(2) { rank, group in
            let ddp = try DistributedDataParallel(try convertSyncBatchNorm(smallNet(seed: 5), processGroup: group), processGroup: group)
            do {
                try ddp.join { }
                Issue.record("join with SyncBatchNorm should throw")
            } catch let error as DataParallelError {
                #expect(error.description.contains("SyncBatchNorm"))
            }
        }
    }
}
