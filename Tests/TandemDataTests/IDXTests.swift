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

    /// Writes an MNIST split (IDX images `[n, rows, cols]` and labels) into a new folder.
    private func writeMNIST(rows: Int, cols: Int, labels: [UInt8]) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mnist-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        let n = labels.count
        let images = [0, 0, 8, 3] + be32(n) + be32(rows) + be32(cols) + [UInt8](repeating: 7, count: n * rows * cols)
        try Data(images).write(to: URL(fileURLWithPath: folder + "/train-images-idx3-ubyte"))
        try Data([0, 0, 8, 1] + be32(n) + labels).write(to: URL(fileURLWithPath: folder + "/train-labels-idx1-ubyte"))
        return folder
    }

    /// Images of another size than 28×28 (they made the normalisation read past its buffer) and
    /// labels outside 0...9 are typed errors naming the file and the field.
    @Test func wrongImageSizeAndLabelRangeAreTypedErrors() throws {
        for (rows, cols) in [(1, 1), (10, 10), (28, 27)] {
            let folder = try writeMNIST(rows: rows, cols: cols, labels: [1, 2])
            defer { try? FileManager.default.removeItem(atPath: folder) }
            #expect { try MNIST(folder: folder, train: true) } throws: {
                "\($0)".contains("train-images-idx3-ubyte") && "\($0)".contains("\(rows)×\(cols)") && "\($0)".contains("28×28")
            }
        }
        let folder = try writeMNIST(rows: 28, cols: 28, labels: [3, 12, 4])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect { try MNIST(folder: folder, train: true) } throws: {
            "\($0)".contains("train-labels-idx1-ubyte") && "\($0)".contains("label 1 is 12")
        }
    }

    /// Header sizes whose product overflows (0xFFFFFFFF in every dimension) are a typed error,
    /// not an overflow trap.
    @Test func overflowingHeaderIsATypedError() throws {
        let header: [UInt8] = [0, 0, 8, 3] + [UInt8](repeating: 255, count: 12) + [1, 2, 3]
        #expect { try IDX.decode(Data(header), path: "huge") } throws: { "\($0)".contains("huge") }
    }

    /// Random and mutated IDX files (2,000 of them, bounded to a second or so) never crash:
    /// each decodes or throws `DatasetError`.
    @Test func fuzzedIDXFilesDecodeOrThrow() throws {
        let valid: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3] + [UInt8](repeating: 9, count: 12)
        var mutator = Mutator(seed: 0x5eed)
        var decoded = 0, refused = 0
        for round in 0..<2000 {
            let bytes = mutator.mutate(valid, round: round, randomLength: 40)
            do { _ = try IDX.decode(Data(bytes), path: "fuzz"); decoded += 1 } catch is DatasetError { refused += 1 }
        }
        #expect(decoded + refused == 2000 && refused > 0)
    }
}
