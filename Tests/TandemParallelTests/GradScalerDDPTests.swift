import Foundation
import Testing
import TandemDistributed
import TandemNN
import TandemOptim
import TandemParallel

/// GradScaler under data parallelism: every rank decides alike.
@Suite(.serialized) struct GradScalerDDPTests {
    final class Outcomes: @unchecked Sendable {
        var byRank: [Int: (stepped: [Bool], scale: Double, weights: [Float])] = [:]
        let lock = NSLock()
    }

    /// Only rank 1 overflows (its gradient is set directly, bypassing DDP's averaging):
    /// the all-reduced flag makes both ranks skip and both halve the scale.
    @Test func oneRankOverflowsBothSkip() throws {
        let outcomes = Outcomes()
        try runRanks(2) { rank, group in
            let p = Parameter(Tensor([1, 2] as [Float], shape: [2]))
            let opt = try SGD([p], lr: 0.1)
            let scaler = try GradScaler(initScale: 1024, processGroup: group)
            var stepped: [Bool] = []
            // Step 1: rank 1 alone has an inf gradient.
            try p.value.setGrad(Tensor(rank == 1 ? [Float.infinity, 0] : [1024, 1024], shape: [2]))
            stepped.append(try scaler.step(opt))
            scaler.update()
            // Step 2: both finite.
            try p.value.setGrad(Tensor([512, 512] as [Float], shape: [2]))
            stepped.append(try scaler.step(opt))
            scaler.update()
            outcomes.lock.lock()
            outcomes.byRank[rank] = (stepped, scaler.scale, p.value.toFloatArray())
            outcomes.lock.unlock()
        }
        for rank in 0..<2 {
            let o = try #require(outcomes.byRank[rank])
            #expect(o.stepped == [false, true], "rank \(rank)")
            #expect(o.scale == 512, "rank \(rank)")
            #expect(o.weights == [0.9, 1.9], "rank \(rank)")
        }
    }

    /// A 2-rank DDP job whose loss is scaled into overflow on one rank only: both skip the
    /// step and halve the scale, and the replicas stay identical.
    @Test func ddpLossScaledIntoOverflowSkipsOnEveryRank() throws {
        let outcomes = Outcomes()
        try runRanks(2) { rank, group in
            let model = try DistributedDataParallel(smallNet(seed: 5, batchNorm: false), processGroup: group)
            let opt = try SGD(model.parameters(), lr: 0.1)
            let scaler = try GradScaler(initScale: 65536, processGroup: group)
            let (x, y) = fixedBatch(4, seed: UInt64(10 + rank))
            let before = model.parameters().flatMap { $0.value.toFloatArray() }
            var stepped: [Bool] = []
            for step in 0..<2 {
                opt.zeroGrad()
                var loss = try Tensor.crossEntropy(model(x), target: y)
                // Step 0: rank 0's loss is multiplied into float32 overflow after scaling.
                if step == 0 && rank == 0 { loss = try loss * 1e36 }
                try scaler.scale(loss).backward()
                stepped.append(try scaler.step(opt))
                scaler.update()
                if step == 0 {
                    #expect(model.parameters().flatMap { $0.value.toFloatArray() } == before)
                }
            }
            outcomes.lock.lock()
            outcomes.byRank[rank] = (stepped, scaler.scale, model.parameters().flatMap { $0.value.toFloatArray() })
            outcomes.lock.unlock()
        }
        let r0 = try #require(outcomes.byRank[0]), r1 = try #require(outcomes.byRank[1])
        #expect(r0.stepped == [false, true] && r1.stepped == [false, true])
        #expect(r0.scale == 32768 && r1.scale == 32768)
        #expect(r0.weights == r1.weights)
    }

    /// SyncBatchNorm normalises a bfloat16 input (an autocast conv output) in float32.
    @Test func syncBatchNormOfBFloat16InputIsFloat32() throws {
        try runRanks(2) { rank, group in
            let bn = SyncBatchNorm(3, processGroup: group)
            let x = Tensor.randn([4, 3, 5, 5], generator: Generator(seed: UInt64(rank + 1)))
            let low = try bn(x.to(.bfloat16))
            #expect(low.dtype == .float32)
            let reference = try SyncBatchNorm(3, processGroup: group)(x.to(.bfloat16).to(.float32))
            #expect(low.toFloatArray() == reference.toFloatArray())
        }
    }
}
