import Testing
import TandemCore
import TandemData
import TandemTestSupport

@Suite struct DistributedSamplerTests {
    @Test func matchesPyTorchShards() throws {
        let golden = try Golden.load("distributed_sampler")
        for n in [10, 11] {
            for r in [3, 4] {
                for drop in [false, true] {
                    for rank in 0..<r {
                        let name = "n\(n)_r\(r)_drop\(drop ? "T" : "F")_rank\(rank)"
                        let sampler = try DistributedSampler(count: n, numReplicas: r, rank: rank, shuffle: false, dropLast: drop)
                        #expect(sampler.indices(epoch: 0) == (try golden.tensor(name)).toIntArray(), "\(name)")
                    }
                }
            }
        }
    }

    @Test func shuffledShardsAreDisjointAndAgreeAcrossRanks() throws {
        let shards = try (0..<3).map { try DistributedSampler(count: 20, numReplicas: 3, rank: $0, seed: 7).indices(epoch: 2) }
        let all = shards.flatMap { $0 }
        #expect(all.count == 21)                       // padded to a multiple of 3
        #expect(Set(all) == Set(0..<20))
        let again = try DistributedSampler(count: 20, numReplicas: 3, rank: 1, seed: 7)
        #expect(again.indices(epoch: 2) == shards[1])
        #expect(again.indices(epoch: 3) != shards[1])
    }

    @Test func exactModeCountsEveryExampleOnce() throws {
        let shards = try (0..<3).map { try DistributedSampler(count: 10, numReplicas: 3, rank: $0, shuffle: false, padding: false) }
        #expect(shards.map { $0.indices(epoch: 0) } == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]])
        #expect(shards.map(\.numSamples) == [4, 3, 3])
        #expect(throws: TensorError.self) { try DistributedSampler(count: 10, numReplicas: 2, rank: 2) }
    }
}
