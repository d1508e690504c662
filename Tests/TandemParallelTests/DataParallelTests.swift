import Foundation
import Testing
import TandemNN
import TandemOptim
import TandemParallel
import TandemTestSupport

/// `DataParallel`: replicas on threads of one process give the plain model's results.
@Suite struct DataParallelTests {
    func maxDifference(_ a: [Double], _ b: [Double]) -> Double {
        zip(a, b).map { Swift.abs($0 - $1) }.max() ?? 0
    }

    @Test(arguments: [2, 3]) func gradientsEqualThePlainModelOnTheFullBatch(replicas: Int) throws {
        let plain = smallNet(seed: 5, batchNorm: false)
        let dp = try DataParallel(smallNet(seed: 5, batchNorm: false), replicaCount: replicas) { smallNet(seed: 99, batchNorm: false) }
        #expect(dp.replicas.count == replicas)
        #expect(dp.parameters().count == plain.parameters().count)
        let (x, y) = fixedBatch(16, seed: 7)
        try Tensor.crossEntropy(plain(x), target: y).backward()
        let output = try dp(x)
        #expect(output.shape == [16, 3])
        try Tensor.crossEntropy(output, target: y).backward()
        for ((name, p), q) in zip(plain.namedParameters(), dp.parameters()) {
            let g = try #require(p.grad), h = try #require(q.grad)
            #expect(maxDifference(g.toDoubleArray(), h.toDoubleArray()) <= 1e-5, "\(name)")
        }
        // The replicas' own parameters are aliases: they hold no gradient.
        for replica in dp.replicas.dropFirst() { #expect(replica.parameters().allSatisfy { $0.grad == nil }) }
    }

    @Test func trainingStepsMatchThePlainModel() throws {
        let plain = smallNet(seed: 5, batchNorm: false)
        let dp = try DataParallel(smallNet(seed: 5, batchNorm: false), replicaCount: 2) { smallNet(seed: 99, batchNorm: false) }
        let optA = try SGD(plain.parameters(), lr: 0.05, momentum: 0.9), optB = try SGD(dp.parameters(), lr: 0.05, momentum: 0.9)
        for step in 0..<5 {
            // An odd batch: chunks of 5 and 4.
            let (x, y) = fixedBatch(9, seed: UInt64(200 + step))
            optA.zeroGrad(); optB.zeroGrad()
            try Tensor.crossEntropy(plain(x), target: y).backward()
            try Tensor.crossEntropy(dp(x), target: y).backward()
            try optA.step(); try optB.step()
        }
        for ((name, a), (_, b)) in zip(plain.stateDict(), dp.stateDict()) {
            #expect(maxDifference(a.toDoubleArray(), b.toDoubleArray()) <= 1e-5, "\(name)")
        }
    }

    @Test func smallBatchesAndNoGrad() throws {
        let plain = smallNet(seed: 5, batchNorm: false)
        let dp = try DataParallel(smallNet(seed: 5, batchNorm: false), replicaCount: 4) { smallNet(seed: 1, batchNorm: false) }
        // 2 samples on 4 replicas: two are used.
        let (x, _) = fixedBatch(2, seed: 3)
        #expect(maxDifference(try plain(x).toDoubleArray(), try dp(x).toDoubleArray()) <= 1e-6)
        let out = try Tensor.withNoGrad { try dp(fixedBatch(8, seed: 4).0) }
        #expect(!out.requiresGrad)
    }

    @Test func threadLimitIsPerCallAndLeavesTheSettingAlone() {
        let before = Tandem.numThreads
        #expect(Tandem.withThreadLimit(1) { Tandem.numThreads } == 1)
        #expect(Tandem.withThreadLimit(before + 10) { Tandem.numThreads } == before)
        #expect(Tandem.numThreads == before)
    }

    @Test func replicasMustMatchTheModel() throws {
        #expect(throws: DataParallelError.self) {
            _ = try DataParallel(smallNet(seed: 5, batchNorm: false), replicaCount: 2) { smallNet(seed: 5, batchNorm: true) }
        }
    }
}
