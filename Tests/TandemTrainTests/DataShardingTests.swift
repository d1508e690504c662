import Testing
import TandemData
import TandemTrain

@Suite struct DataShardingTests {
    /// Step s of a run of N processes at batch B covers exactly the examples of step s of one
    /// process at batch N·B, in every epoch.
    @Test func everyWorldSizeDrawsTheSameGlobalBatches() throws {
        let count = 1000, globalBatch = 48
        for epoch in 0..<3 {
            let single = try DataSharding.trainSampler(count: count, seed: 7).indices(epoch: epoch)
            for worldSize in [2, 3, 4] {
                let batch = globalBatch / worldSize
                let shards = try (0..<worldSize).map {
                    try DataSharding.trainSampler(count: count, rank: $0, worldSize: worldSize, seed: 7).indices(epoch: epoch)
                }
                for step in 0..<(count / globalBatch) {
                    let union = shards.flatMap { $0[(step * batch)..<((step + 1) * batch)] }
                    let expected = single[(step * globalBatch)..<((step + 1) * globalBatch)]
                    #expect(Set(union) == Set(expected), "epoch \(epoch), world size \(worldSize), step \(step)")
                }
            }
        }
    }

    /// Evaluation counts every example exactly once over the group.
    @Test func evaluationCoversEachExampleOnce() throws {
        for worldSize in 1...4 {
            let all = try (0..<worldSize).flatMap { try DataSharding.evalSampler(count: 103, rank: $0, worldSize: worldSize).indices(epoch: 0) }
            #expect(all.sorted() == Array(0..<103))
        }
    }
}
