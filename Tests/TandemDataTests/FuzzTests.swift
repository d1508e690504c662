import Foundation
import Testing
import TandemData
import TandemTestSupport

/// Hostile CIFAR-10 and text inputs: each read ends in a value or a typed error, never a trap.
@Suite struct FuzzTests {
    func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// 300 CIFAR-10 test batches (two records, mutated): read or refused.
    @Test func fuzzedCIFARBatchesLoadOrThrow() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let record = [UInt8(3)] + [UInt8](repeating: 100, count: 3072)
        var mutator = Mutator(seed: 11)
        var loaded = 0, refused = 0
        for round in 0..<300 {
            try Data(mutator.mutate(record + record, round: round)).write(to: URL(fileURLWithPath: dir + "/test_batch.bin"))
            do { _ = try CIFAR10(folder: dir, train: false); loaded += 1 } catch is DatasetError { refused += 1 }
        }
        #expect(loaded + refused == 300 && refused > 0)
    }

    /// 500 text corpora (valid UTF-8, mutated, random bytes) with random contexts: a dataset or
    /// a `TextDatasetError` (too short for the context).
    @Test func fuzzedTextCorporaLoadOrThrow() throws {
        var mutator = Mutator(seed: 12)
        let text = Array("The quick brown fox jumps over the lazy dog. ".utf8) + Array("Grüße, ½ ∑ 🙂\n".utf8)
        var loaded = 0, refused = 0
        for round in 0..<500 {
            let corpus = mutator.mutate(text + text, round: round)
            do {
                _ = try TextDataset(corpus: corpus, context: 1 + mutator.next(40), split: .train)
                loaded += 1
            } catch is TextDatasetError {
                refused += 1
            }
        }
        #expect(loaded + refused == 500 && loaded > 0 && refused > 0)
    }
}
