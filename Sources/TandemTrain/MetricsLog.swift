import Foundation
import TandemCore

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

    /// Writes one record; values must be JSON-encodable (numbers, strings, bools). A non-finite
    /// number (a NaN loss of a skipped float16 step) is written as null.
    public func write(_ record: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: JSONValues.finite(record), options: [.sortedKeys])
        data.append(0x0A)
        handle.write(data)
    }

    /// Reads every record of a metrics file.
    public static func read(path: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").enumerated().map { number, line in
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                throw TrainError.io("metrics file '\(path)' has a line that is not a JSON object (line \(number + 1))")
            }
            return object
        }
    }
}

/// JSON has no NaN or infinity: `JSONSerialization` refuses them.
public enum JSONValues {
    /// Prints `object` as one line of JSON with sorted keys (non-finite numbers as null, since
    /// JSON has no NaN): the `--json` output of the command-line tools.
    public static func printLine(_ object: Any) throws {
        let data = try JSONSerialization.data(withJSONObject: finite(object), options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }

    /// `value` with every non-finite `Double` or `Float` (in dictionaries and arrays too)
    /// replaced by null.
    public static func finite(_ value: Any) -> Any {
        switch value {
        case let d as Double: return d.isFinite ? d : NSNull()
        case let f as Float: return f.isFinite ? f : NSNull()
        case let dictionary as [String: Any]: return dictionary.mapValues(finite)
        case let array as [Any]: return array.map(finite)
        default: return value
        }
    }
}

/// Errors of the training driver, each saying what to do.
public enum TrainError: Error, CustomStringConvertible {
    case io(String)
    case invalidArgument(String)
    case checkpoint(String)
    /// A loss, parameter or buffer became inf or NaN at `step`; `tensor` names it.
    case diverged(step: Int, tensor: String, value: String)

    public var description: String {
        switch self {
        case let .io(m), let .invalidArgument(m), let .checkpoint(m): return m
        case let .diverged(step, tensor, value):
            return "training diverged at step \(step): \(tensor) is \(value). Lower the learning rate (--lr), or train with "
                + "gradient clipping; the last checkpoint written before this step is kept (resume from it with --resume)"
        }
    }
}

/// The output folder of a run (`--out`).
public enum OutputFolder {
    /// Creates `path` (and its parents) if needed; a typed error that says what to do when it
    /// is a file, cannot be created, or cannot be written.
    /// `flag` names the option the path came from in the messages.
    public static func prepare(_ path: String, flag: String = "--out") throws {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
            guard isFolder.boolValue else {
                throw TrainError.io("\(flag) '\(path)' is a file; give the path of a folder (it is created if missing)")
            }
        } else {
            let code = makeFolders(path)
            guard code == 0 else {
                throw TrainError.io("cannot create the \(flag) folder '\(path)' (\(String(cString: strerror(code)))); "
                    + "choose a folder in a place you can write")
            }
        }
        guard access(path, W_OK | X_OK) == 0 else {
            throw TrainError.io("cannot write into the \(flag) folder '\(path)' (\(String(cString: strerror(errno)))); choose another folder")
        }
    }

    /// `mkdir -p path`: 0, or the errno of the first folder that could not be made.
    private static func makeFolders(_ path: String) -> Int32 {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { return errno }
        }
        return 0
    }
}

/// Finds non-finite values in a model's state (parameters and buffers, by state-dict name).
public enum FiniteCheck {
    /// The first state-dict entry of `state` holding an inf or NaN, with a description of
    /// what it holds; nil when all are finite.
    public static func firstNonFinite(_ state: [(String, Tensor)]) -> (name: String, value: String)? {
        for (name, tensor) in state where tensor.dtype.isFloatingPoint && !tensor.isAllFinite() {
            let values = tensor.toDoubleArray()
            let nan = values.filter(\.isNaN).count, inf = values.filter(\.isInfinite).count
            return (name, "non-finite in \(nan + inf) of \(values.count) values (\(nan) NaN, \(inf) inf)")
        }
        return nil
    }
}
