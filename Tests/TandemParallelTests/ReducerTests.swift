import Synchronization
import XCTest
import TandemDistributed
import TandemNN
import TandemOptim
import TandemParallel
import TandemTestSupport

/// An XCTest case: XCTest runs its tests one at a time, and `Tensor.copyOnWriteCount` is
/// process-wide, so no other test may run while this one counts.
final class ReducerTests: XCTestCase {
    /// The gradient buckets go to the all-reduce and come back without being copied: after
    /// warm-up a training step of DDP (2 ranks, several buckets, BatchNorm buffers riding in
    /// bucket 0, SGD with momentum) makes no copy-on-write copy at all.
    func testBucketsAreNeverCopied() throws {
        let copies = Atomic<Int>(0)
        try runRanks(2) { rank, group in
            let model = smallNet(seed: 5)
            let ddp = try DistributedDataParallel(model, processGroup: group, bucketCapMB: 0.0005)
            let opt = try SGD(ddp.parameters(), lr: 0.05, momentum: 0.9)
            func step(_ i: Int) throws {
                let (x, y) = fixedBatch(8, seed: UInt64(100 + 2 * i + rank))
                opt.zeroGrad()
                try Tensor.crossEntropy(ddp(x), target: y).backward()
                try ddp.synchronize()
                try opt.step()
            }
            for i in 0..<3 { try step(i) }
            let before = Tensor.copyOnWriteCount
            for i in 3..<8 { try step(i) }
            copies.add(Tensor.copyOnWriteCount - before, ordering: .relaxed)
        }
        // Both ranks share the process-wide counter, so each saw the other's copies too.
        XCTAssertEqual(copies.load(ordering: .relaxed), 0)
    }
}
