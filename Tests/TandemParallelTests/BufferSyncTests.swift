import Foundation
import Testing
import TandemCore
import TandemNN
import TandemOptim
import TandemParallel

/// DDP carries the buffers (BatchNorm running statistics) in its first gradient bucket.
@Suite struct BufferSyncTests {
    final class Log: @unchecked Sendable {
        var buffers: [[Int: [(String, [Double])]]] = Array(repeating: [:], count: 3)
        var expected: [[(String, [Double])]] = Array(repeating: [], count: 3)
        let lock = NSLock()
    }

    /// With plain BatchNorm and different data per rank, every rank ends each step holding the
    /// buffers that rank 0's forward pass produced, counters included, bit for bit: what
    /// PyTorch's broadcast at the start of the next forward pass would give.
    @Test func everyRankEndsEachStepWithRankZerosBuffers() throws {
        let log = Log()
        try runRanks(2) { rank, group in
            let model = smallNet(seed: 5)
            let ddp = try DistributedDataParallel(model, processGroup: group)
            let opt = try SGD(ddp.parameters(), lr: 0.05)
            for step in 0..<3 {
                let (x, y) = fixedBatch(16, seed: UInt64(200 + 10 * step + rank))
                if rank == 0 {
                    let reference = smallNet(seed: 5)
                    try reference.loadStateDict(Dictionary(uniqueKeysWithValues: model.stateDict()))
                    _ = try reference(x)
                    let values = reference.namedBuffers().map { ($0.0, $0.1.value.toDoubleArray()) }
                    log.lock.withLock { log.expected[step] = values }
                }
                opt.zeroGrad()
                try Tensor.crossEntropy(ddp(x), target: y).backward()
                try ddp.synchronize()
                try opt.step()
                let values = model.namedBuffers().map { ($0.0, $0.1.value.toDoubleArray()) }
                log.lock.withLock { log.buffers[step][rank] = values }
            }
        }
        for step in 0..<3 {
            #expect(log.expected[step].count == 3)  // running_mean, running_var, num_batches_tracked
            for rank in 0..<2 {
                let got = log.buffers[step][rank] ?? []
                #expect(got.map(\.0) == log.expected[step].map(\.0))
                for ((name, a), (_, b)) in zip(got, log.expected[step]) {
                    #expect(a == b, "step \(step) rank \(rank) \(name)")
                }
            }
        }
        #expect(log.expected[2].last?.1 == [3])
    }
}
