import Foundation
import Testing
import TandemData
import TandemCore

/// The byte-level text corpus: loading (file, folder, fortune separators), the split, windows
/// with next-character targets, and the typed errors. Uses only text written by the test.
@Suite struct TextDatasetTests {
    static func temporaryFolder() throws -> String {
        let folder = NSTemporaryDirectory() + "tandem-text-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return folder
    }

    @Test func windowsAreNextCharacterPairs() throws {
        let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 10)   // 450 bytes
        let corpus = [UInt8](text.utf8)
        let train = try TextDataset(corpus: corpus, context: 16, split: .train)
        let test = try TextDataset(corpus: corpus, context: 16, split: .test)
        #expect(train.bytes.count == 405 && test.bytes.count == 45)
        #expect(train.bytes + test.bytes == corpus)
        #expect(test.count == 2 && train.count == (405 - 1 - 15) / 16)
        #expect(TextDataset.vocabularySize == 256)
        for epoch in 0..<3 {
            let (x, y) = try train.batch([0, train.count - 1], epoch: epoch)
            #expect(x.shape == [2, 16] && y.shape == [2, 16] && x.dtype == .int64)
            let (xs, ys) = (x.toIntArray(), y.toIntArray())
            let start = train.offset(epoch: epoch)
            #expect(xs[0..<16].elementsEqual(corpus[start..<(start + 16)].map(Int.init)))
            #expect(ys[0..<16].elementsEqual(corpus[(start + 1)..<(start + 17)].map(Int.init)))
            #expect(Array(xs[1..<16]) == Array(ys[0..<15]))
        }
        #expect(test.offset(epoch: 5) == 0)
        let (x, y) = try test.example(at: 1, epoch: 0)
        #expect(x.shape == [16] && TextDataset.decode(x.toIntArray()) == String(decoding: test.bytes[16..<32], as: UTF8.self))
        #expect(y.toIntArray() == test.bytes[17..<33].map(Int.init))
        #expect(throws: (any Error).self) { try test.batch([2], epoch: 0) }
        #expect(TextDataset.decode(TextDataset.encode("héllo")) == "héllo" && TextDataset.encode("é").count == 2)
    }

    @Test func loadsFilesAndFoldersWithoutFortuneSeparators() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "First fortune.\n%\nSecond one.\n%\n".write(toFile: folder + "/b", atomically: true, encoding: .utf8)
        try "Alpha.\n%\nBeta 100% sure.".write(toFile: folder + "/a", atomically: true, encoding: .utf8)
        try "index".write(toFile: folder + "/a.dat", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: folder + "/a.u8", withDestinationPath: "a")
        #expect(String(decoding: try TextDataset.load(path: folder + "/b"), as: UTF8.self) == "First fortune.\nSecond one.\n")
        // Folder: extension-less regular files in name order, each ending in a newline.
        #expect(String(decoding: try TextDataset.load(path: folder), as: UTF8.self)
                == "Alpha.\nBeta 100% sure.\nFirst fortune.\nSecond one.\n")
        let train = try TextDataset(path: folder, context: 4, split: .train, testFraction: 0.25)
        #expect(train.bytes.count == 37)   // 50 bytes, 13 in test
    }

    @Test func typedErrors() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(throws: TextDatasetError.missing(path: folder + "/nope")) {
            try TextDataset(path: folder + "/nope", split: .train)
        }
        try "".write(toFile: folder + "/empty", atomically: true, encoding: .utf8)
        #expect(throws: TextDatasetError.empty(path: folder + "/empty")) { try TextDataset(path: folder + "/empty", split: .train) }
        try "%\n%\n".write(toFile: folder + "/seps", atomically: true, encoding: .utf8)
        #expect(throws: TextDatasetError.empty(path: folder + "/seps")) { try TextDataset(path: folder + "/seps", split: .test) }
        try String(repeating: "x", count: 100).write(toFile: folder + "/short", atomically: true, encoding: .utf8)
        // 10 test bytes (plus the added newline: 101 bytes, 10 in test) cannot hold a window of 17.
        #expect(throws: TextDatasetError.tooShort(path: folder + "/short", split: "test", bytes: 10, needed: 17)) {
            try TextDataset(path: folder + "/short", context: 16, split: .test)
        }
        #expect(throws: TextDatasetError.self) { try TextDataset(corpus: [1, 2, 3], context: 0, split: .train) }
    }
}
