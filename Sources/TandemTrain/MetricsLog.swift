import Foundation

/// Appends one JSON object per line to a metrics file (`metrics.jsonl`).
public final class MetricsLog {
    private let handle: FileHandle
    public let path: String

    /// Creates (or truncates, unless `append`) the file.
    public init(path: String, append: Bool = false) throws {
        self.path = path
        if !append || !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw TrainError.io("cannot create metrics file '\(path)'; check that the folder exists and is writable")
            }
        }
        guard let h = FileHandle(forWritingAtPath: path) else {
            throw TrainError.io("cannot open metrics file '\(path)' for writing")
        }
        handle = h
        handle.seekToEndOfFile()
    }

    deinit { try? handle.close() }

    /// Writes one record; values must be JSON-encodable (numbers, strings, bools).
    public func write(_ record: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        data.append(0x0A)
        handle.write(data)
    }

    /// Reads every record of a metrics file.
    public static func read(path: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map {
            guard let object = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] else {
                throw TrainError.io("metrics file '\(path)' has a line that is not a JSON object")
            }
            return object
        }
    }
}

/// Errors of the training driver, each saying what to do.
public enum TrainError: Error, CustomStringConvertible {
    case io(String)
    case invalidArgument(String)
    case checkpoint(String)

    public var description: String {
        switch self {
        case let .io(m), let .invalidArgument(m), let .checkpoint(m): return m
        }
    }
}
