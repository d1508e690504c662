import Foundation
import Testing
import TandemData
import TandemTestSupport

@Suite struct IDXTests {
    static var repoRoot: String { Golden.folder.replacingOccurrences(of: "/Tests/Fixtures/golden", with: "") }

    @Test func loadsVendoredMNISTTestSplit() throws {
        let test = try MNIST(folder: Self.repoRoot + "/Data/mnist", train: false)
        #expect(test.images.shape == [10000, 28, 28])
        #expect(test.count == 10000)
        // Label counts from the dataset's README.
        var counts = [Int](repeating: 0, count: 10)
        for l in test.labels.toIntArray() { counts[l] += 1 }
        #expect(counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    }

    @Test func truncatedFileGivesTypedErrorNamingIt() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/bad-images-idx3-ubyte"
        // Header says 2×2×2 = 8 bytes, only 3 follow.
        try Data([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect { try IDX.load(path: path) } throws: { "\($0)".contains(path) && "\($0)".contains("8 bytes") }
        try Data([1, 2, 3, 4, 5]).write(to: URL(fileURLWithPath: path))
        #expect { try IDX.load(path: path) } throws: { "\($0)".contains("magic") }
        // A gzip file cut in half.
        let gz = try Data(contentsOf: URL(fileURLWithPath: Self.repoRoot + "/Data/mnist/t10k-labels-idx1-ubyte.gz"))
        try gz.prefix(gz.count / 2).write(to: URL(fileURLWithPath: path + ".gz"))
        #expect { try IDX.load(path: path + ".gz") } throws: { "\($0)".contains("truncated") }
        #expect(throws: DatasetError.self) { try MNIST(folder: folder + "/missing", train: true) }
    }
}
