import Foundation
import Testing
import TandemCore
import TandemData

/// A dataset whose examples are their own index, optionally slow or failing.
struct CountingDataset: Dataset {
    let count: Int
    var failAt: Int? = nil
    var slowAt: Int? = nil
    var delay: Double = 0.05
    func example(at index: Int, epoch: Int) throws -> (input: Tensor, target: Tensor) {
        if index == slowAt { Thread.sleep(forTimeInterval: delay) }
        if index == failAt { throw DatasetError.corrupt(path: "example \(index)", reason: "test failure") }
        return (Tensor([Double(index)], shape: [1]), Tensor(int64: [index], shape: []))
    }
}

@Suite struct DataLoaderTests {
    func collect(_ loader: DataLoader<CountingDataset>) throws -> [[Int]] {
        var out: [[Int]] = []
        try loader.forEach { _, y in out.append(y.toIntArray()) }
        return out
    }

    @Test func sameBatchesForZeroOneAndFourWorkers() throws {
        let data = CountingDataset(count: 103)
        let reference = try collect(DataLoader(data, batchSize: 8, shuffle: true, seed: 5))
        #expect(reference.count == 13)
        #expect(reference.flatMap { $0 }.sorted() == Array(0..<103))
        for workers in [1, 4] {
            let loader = try DataLoader(data, batchSize: 8, shuffle: true, numWorkers: workers, seed: 5)
            #expect(try collect(loader) == reference, "workers \(workers)")
        }
    }

    @Test func epochsReshuffleAndDropLast() throws {
        let loader = try DataLoader(CountingDataset(count: 10), batchSize: 4, shuffle: true, dropLast: true, seed: 1)
        let first = try collect(loader)
        loader.setEpoch(1)
        let second = try collect(loader)
        #expect(first.count == 2 && second.count == 2)
        #expect(first != second)
        #expect(loader.count == 2)
    }

    /// `--batch-size 9223372036854775807` overflowed the batch arithmetic (a trap): the whole
    /// dataset is one batch, or none with `dropLast`.
    @Test func hugeBatchSizeIsOneBatch() throws {
        let loader = try DataLoader(CountingDataset(count: 10), batchSize: Int.max)
        #expect(loader.count == 1)
        #expect(try collect(loader).count == 1)
        #expect(try DataLoader(CountingDataset(count: 10), batchSize: Int.max, dropLast: true).count == 0)
    }

    @Test func shuffleWithSamplerIsRejected() {
        #expect(throws: DataLoaderError.self) {
            try DataLoader(CountingDataset(count: 4), shuffle: true, sampler: SequentialSampler(count: 4))
        }
        #expect(throws: DataLoaderError.self) { try DataLoader(CountingDataset(count: 4), batchSize: 0) }
    }

    @Test func workerErrorIsRethrownInTheLoop() throws {
        for workers in [0, 2] {
            let loader = try DataLoader(CountingDataset(count: 20, failAt: 13), batchSize: 4, numWorkers: workers)
            var seen = 0
            #expect(throws: DatasetError.self) { try loader.forEach { _, _ in seen += 1 } }
            #expect(seen == 3, "workers \(workers)")
        }
    }

    @Test func slowFirstBatchDoesNotDeadlockTheQueue() throws {
        // Other workers must not take every prefetch slot while batch 0 is still being made.
        let loader = try DataLoader(CountingDataset(count: 64, slowAt: 0), batchSize: 2, numWorkers: 4, prefetchFactor: 1)
        #expect(try collect(loader).count == 32)
    }

    @Test func stuckWorkerTimesOut() throws {
        let loader = try DataLoader(CountingDataset(count: 8, slowAt: 0, delay: 2), batchSize: 2, numWorkers: 1, timeout: 0.2)
        #expect { try loader.forEach { _, _ in } } throws: { "\($0)".contains("batch 0") && "\($0)".contains("0.2") }
    }

    @Test func stoppingEarlyReleasesWorkers() throws {
        let loader = try DataLoader(CountingDataset(count: 1000), batchSize: 2, numWorkers: 2)
        let it = loader.makeIterator()
        _ = try it.next()
        // The iterator goes away with workers blocked on a full queue; they must exit.
    }

    @Test func cifarBinaryFormat() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cifar-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var bytes = Data()
        for record in 0..<3 {
            bytes.append(UInt8(record + 7))
            bytes.append(contentsOf: (0..<3072).map { UInt8(($0 + record) % 256) })
        }
        try bytes.write(to: URL(fileURLWithPath: folder + "/test_batch.bin"))
        let data = try CIFAR10(folder: folder, train: false, transform: ToTensor())
        #expect(data.count == 3)
        #expect(data.labels.toIntArray() == [7, 8, 9])
        let (x, y) = try data.example(at: 1, epoch: 0)
        #expect(x.shape == [3, 32, 32])
        #expect(try y.item() == 8)
        #expect(Swift.abs(try x[0][0][0].item() - 1.0 / 255) < 1e-7)
        let augmented = try CIFAR10(folder: folder, train: false, transform: CIFAR10.trainTransform)
        #expect(try augmented.example(at: 2, epoch: 3).input.shape == [3, 32, 32])
        // A truncated file is a typed error naming it.
        try bytes.prefix(5000).write(to: URL(fileURLWithPath: folder + "/test_batch.bin"))
        #expect { try CIFAR10(folder: folder, train: false) } throws: { "\($0)".contains("test_batch.bin") }
    }
}
