import Foundation
import TandemCore

/// Errors of `TextDataset`, each naming the path and what to do.
public enum TextDatasetError: Error, CustomStringConvertible, Equatable {
    /// Nothing exists at `path`.
    case missing(path: String)
    /// The file (or every text file of the folder) holds no text.
    case empty(path: String)
    /// The corpus split has `bytes` bytes; one window needs `needed` (context + 1).
    case tooShort(path: String, split: String, bytes: Int, needed: Int)
    /// An invalid setting (context, test fraction).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .missing(path):
            return "text corpus '\(path)' not found; pass a UTF-8 text file or a folder of them (e.g. /usr/share/games/fortunes from Debian's fortunes package, installed by scripts/setup.sh)"
        case let .empty(path): return "text corpus '\(path)' holds no text"
        case let .tooShort(path, split, bytes, needed):
            return "the \(split) split of text corpus '\(path)' has \(bytes) bytes but one window needs \(needed); use a longer text or a shorter --context"
        case let .invalidArgument(message): return "TextDataset: \(message)"
        }
    }
}

/// A byte-level character corpus for next-character prediction.
///
/// The vocabulary is the 256 byte values of the UTF-8 text (`vocabularySize`): robust to any
/// input, no unknown symbols; a non-ASCII character spans several tokens. The corpus is split
/// by position: the first `1 − testFraction` of the bytes train, the last `testFraction` test.
///
/// Example i of a split is a window of `context` bytes and the same window shifted by one:
/// `(input [context] int64, target [context] int64)` with `target[t] = input[t + 1]`, so a
/// batch is `([batch, context], [batch, context])`. Windows do not overlap. In the training
/// split (`shiftsPerEpoch`), all windows of an epoch start at an offset in `0..<context` that
/// depends on the epoch, so successive epochs see different cuts of the text; the test split
/// always starts at offset 0.
///
/// `load(path:)` reads a file, or every regular file without an extension in a folder (sorted
/// by name, e.g. the fortune files, skipping their `.dat` indexes and `.u8` links), and drops
/// lines that are a single `%` (the separators of the fortune format), leaving the blank line.
public struct TextDataset: Dataset {
    /// The two parts of a corpus.
    public enum Split: String, Sendable {
        /// The first `1 − testFraction` of the bytes.
        case train
        /// The last `testFraction` of the bytes.
        case test
    }

    /// Byte-level vocabulary: token ids 0...255.
    public static let vocabularySize = 256

    /// The bytes of this split.
    public let bytes: [UInt8]
    /// Window length (tokens per example).
    public let context: Int
    /// Which part of the corpus this is.
    public let split: Split
    /// Whether window starts move with the epoch (true for the training split).
    public let shiftsPerEpoch: Bool
    /// Mixed into the per-epoch offset.
    public var seed: UInt64 = 0

    /// The `split` of `corpus` (bytes) with windows of `context` tokens; `path` only names the
    /// corpus in errors. Throws `tooShort` if the split cannot hold one window of `context + 1` bytes.
    public init(corpus: [UInt8], context: Int = 128, split: Split, testFraction: Double = 0.1, path: String = "<memory>") throws {
        guard context >= 1 else { throw TextDatasetError.invalidArgument("context must be at least 1, got \(context)") }
        guard testFraction > 0, testFraction < 1 else {
            throw TextDatasetError.invalidArgument("testFraction must lie in (0, 1), got \(testFraction)")
        }
        guard !corpus.isEmpty else { throw TextDatasetError.empty(path: path) }
        let cut = corpus.count - Int((Double(corpus.count) * testFraction).rounded())
        bytes = Array(split == .train ? corpus[..<cut] : corpus[cut...])
        self.context = context
        self.split = split
        shiftsPerEpoch = split == .train
        // With shifting, the last window of any offset must still fit.
        let needed = context + 1 + (shiftsPerEpoch ? context - 1 : 0)
        guard bytes.count >= needed else {
            throw TextDatasetError.tooShort(path: path, split: split.rawValue, bytes: bytes.count, needed: needed)
        }
    }

    /// The `split` of the corpus at `path` (a file or a folder, see `load(path:)`).
    public init(path: String, context: Int = 128, split: Split, testFraction: Double = 0.1) throws {
        try self.init(corpus: Self.load(path: path), context: context, split: split, testFraction: testFraction, path: path)
    }

    /// The corpus bytes of a file, or of a folder's extension-less regular files in name order,
    /// without lines that are a single `%`. Throws `missing` or `empty`.
    public static func load(path: String) throws -> [UInt8] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw TextDatasetError.missing(path: path) }
        var files = [path]
        if isFolder.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files = names.filter { !$0.contains(".") }.sorted().map { path + "/" + $0 }.filter {
                let attributes = try? FileManager.default.attributesOfItem(atPath: $0)
                return attributes?[.type] as? FileAttributeType == .typeRegular
            }
        }
        var corpus: [UInt8] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw DatasetError.unreadable(path: file, reason: "the file cannot be read; check its permissions")
            }
            var text = stripSeparators([UInt8](data))
            if let last = text.last, last != 0x0A, !text.isEmpty { text.append(0x0A) }
            corpus += text
        }
        guard !corpus.isEmpty else { throw TextDatasetError.empty(path: path) }
        return corpus
    }

    /// `text` without lines consisting of a single `%` (the fortune separators).
    static func stripSeparators(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var lineStart = 0
        while lineStart < text.count {
            let end = text[lineStart...].firstIndex(of: 0x0A) ?? text.count
            let line = text[lineStart..<end]
            if !(line.count == 1 && line.first == 0x25) && !(line.count == 2 && line.first == 0x25 && line.last == 0x0D) {
                out += line
                if end < text.count { out.append(0x0A) }
            }
            lineStart = end + 1
        }
        return out
    }

    /// UTF-8 bytes of `text` as token ids.
    public static func encode(_ text: String) -> [Int] { text.utf8.map(Int.init) }

    /// Token ids (0...255) back to text; invalid UTF-8 becomes U+FFFD.
    public static func decode(_ tokens: [Int]) -> String {
        String(decoding: tokens.map { UInt8(truncatingIfNeeded: $0) }, as: UTF8.self)
    }

    /// Windows per epoch.
    public var count: Int { (bytes.count - 1 - (shiftsPerEpoch ? context - 1 : 0)) / context }

    /// Where the windows of `epoch` start (0 for the test split).
    public func offset(epoch: Int) -> Int {
        guard shiftsPerEpoch, context > 1 else { return 0 }
        return Int(ExampleSeed.generator(seed: seed, epoch: epoch, index: -1).next() % UInt64(context))
    }

    /// Window `index` of `epoch`: `(input [context], target [context])`, int64 byte values.
    public func example(at index: Int, epoch: Int) throws -> (input: Tensor, target: Tensor) {
        let b = try batch([index], epoch: epoch)
        return (try b.input.reshape([context]), try b.target.reshape([context]))
    }

    /// Windows `indices` of `epoch`: `([batch, context], [batch, context])` int64.
    public func batch(_ indices: [Int], epoch: Int) throws -> (input: Tensor, target: Tensor) {
        guard !indices.isEmpty else { throw TensorError.invalidArgument(op: "TextDataset", message: "cannot collate an empty batch") }
        let shift = offset(epoch: epoch)
        var input: [Int] = [], target: [Int] = []
        input.reserveCapacity(indices.count * context)
        target.reserveCapacity(indices.count * context)
        for i in indices {
            guard i >= 0, i < count else {
                throw TensorError.invalidArgument(op: "TextDataset", message: "window \(i) is out of range 0..<\(count)")
            }
            let start = shift + i * context
            input += bytes[start..<(start + context)].map(Int.init)
            target += bytes[(start + 1)...(start + context)].map(Int.init)
        }
        return (Tensor(int64: input, shape: [indices.count, context]), Tensor(int64: target, shape: [indices.count, context]))
    }
}
