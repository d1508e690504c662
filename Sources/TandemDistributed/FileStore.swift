import Foundation
import Glibc
import Synchronization

/// A store in a shared file (`file:///path`, like `torch.distributed.FileStore`): an
/// append-only log of (key, value) records guarded by `flock`. Works across processes on
/// one machine or on a shared file system. Use a fresh path per job.
public final class FileStore: Store {
    /// The file's path.
    public let path: String
    /// The default timeout of blocking calls.
    public let timeout: Duration
    private let lock = Mutex(())

    /// Opens (creating if needed) the store file at `path`.
    public init(path: String, timeout: Duration = defaultTimeout) throws {
        self.path = path
        self.timeout = timeout
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw DistributedError.store(operation: "open", message: "cannot open file store '\(path)': \(String(cString: strerror(errno))). Check that the directory exists and is writable.")
        }
        close(fd)
    }

    /// Runs `body` with the file locked (exclusively) and its records parsed.
    private func locked<R>(_ op: String, _ body: (inout [String: [UInt8]], (String, [UInt8]) throws -> Void) throws -> R) throws -> R {
        try lock.withLock { _ in
            let fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else {
                throw DistributedError.store(operation: op, message: "cannot open file store '\(path)': \(String(cString: strerror(errno)))")
            }
            defer { close(fd) }
            guard flock(fd, LOCK_EX) == 0 else {
                throw DistributedError.store(operation: op, message: "cannot lock '\(path)': \(String(cString: strerror(errno)))")
            }
            defer { flock(fd, LOCK_UN) }
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
            try handle.seek(toOffset: 0)
            let bytes = [UInt8](try handle.readToEnd() ?? Data())
            var records = try FileStore.parse(bytes, path: path)
            return try body(&records) { key, value in
                var rec = [UInt8]()
                let k = Array(key.utf8)
                rec.append(contentsOf: withUnsafeBytes(of: UInt32(k.count).littleEndian, Array.init))
                rec += k
                rec.append(contentsOf: withUnsafeBytes(of: UInt32(value.count).littleEndian, Array.init))
                rec += value
                try handle.seekToEnd()
                try handle.write(contentsOf: rec)
            }
        }
    }

    private static func parse(_ b: [UInt8], path: String) throws -> [String: [UInt8]] {
        var out = [String: [UInt8]]()
        var i = 0
        func u32() -> Int? {
            guard i + 4 <= b.count else { return nil }
            defer { i += 4 }
            return Int(UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24)
        }
        while i < b.count {
            guard let kl = u32(), i + kl <= b.count else { break }
            let key = String(decoding: b[i..<(i + kl)], as: UTF8.self)
            i += kl
            guard let vl = u32(), i + vl <= b.count else { break }
            out[key] = Array(b[i..<(i + vl)])
            i += vl
        }
        return out
    }

    private func poll<R>(_ op: String, keys: [String], timeout: Duration?, _ body: ([String: [UInt8]]) -> R?) throws -> R {
        let t = timeout ?? self.timeout
        let deadline = ContinuousClock.now + t
        var delay = Duration.milliseconds(1)
        while true {
            if let r = try locked(op, { records, _ in body(records) }) { return r }
            if ContinuousClock.now >= deadline {
                throw DistributedError.store(
                    operation: op,
                    message: "timed out after \(format(t)) waiting for key(s) \(keys) in file store '\(path)'. Check that every rank uses the same file and has started")
            }
            Thread.sleep(forTimeInterval: Double(delay.milliseconds) / 1000)
            delay = min(delay * 2, .milliseconds(20))
        }
    }

    /// Appends a record for `key`.
    public func set(_ key: String, _ value: [UInt8]) throws {
        try locked("set") { records, append in try append(key, value) }
    }

    /// Waits until `key` is set, then returns its value.
    public func get(_ key: String, timeout: Duration?) throws -> [UInt8] {
        try poll("get", keys: [key], timeout: timeout) { $0[key] }
    }

    /// Adds `amount` to the decimal integer at `key`.
    public func add(_ key: String, _ amount: Int64) throws -> Int64 {
        try locked("add") { records, append in
            let current = try records[key].map { v -> Int64 in
                guard let n = Int64(String(decoding: v, as: UTF8.self)) else {
                    throw DistributedError.store(operation: "add", message: "key '\(key)' does not hold an integer")
                }
                return n
            } ?? 0
            let new = current &+ amount
            try append(key, Array(String(new).utf8))
            return new
        }
    }

    /// Compare-and-set.
    public func compareSet(_ key: String, expected: [UInt8], desired: [UInt8]) throws -> [UInt8] {
        try locked("compareSet") { records, append in
            let current = records[key]
            if (current == nil && expected.isEmpty) || current == expected {
                try append(key, desired)
                return desired
            }
            return current ?? []
        }
    }

    /// Waits until every key is set.
    public func wait(_ keys: [String], timeout: Duration?) throws {
        try poll("wait", keys: keys, timeout: timeout) { r in keys.allSatisfy { r[$0] != nil } ? () : nil }
    }

    /// True if every key is set.
    public func check(_ keys: [String]) throws -> Bool {
        try locked("check") { records, _ in keys.allSatisfy { records[$0] != nil } }
    }

    /// Deleting is not supported by the append-only log: returns false.
    public func deleteKey(_ key: String) throws -> Bool { false }
}
