import Foundation

/// A key-value store shared by all ranks, used for rendezvous (`torch.distributed.Store`).
/// Keys are strings, values bytes. Every blocking call has a timeout and throws
/// `DistributedError` when it expires.
public protocol Store: AnyObject, Sendable {
    /// The default timeout of blocking calls.
    var timeout: Duration { get }
    /// Sets `key` to `value`, waking anyone waiting for it.
    func set(_ key: String, _ value: [UInt8]) throws
    /// Returns the value of `key`, waiting until it is set (at most `timeout`, nil: the store's).
    func get(_ key: String, timeout: Duration?) throws -> [UInt8]
    /// Adds `amount` to the integer stored at `key` (0 if unset) and returns the new value.
    func add(_ key: String, _ amount: Int64) throws -> Int64
    /// Sets `key` to `desired` if its value is `expected` (or it is unset and `expected` is
    /// empty); returns the value after the call.
    func compareSet(_ key: String, expected: [UInt8], desired: [UInt8]) throws -> [UInt8]
    /// Waits until every key in `keys` is set (at most `timeout`, nil: the store's).
    func wait(_ keys: [String], timeout: Duration?) throws
    /// True if every key in `keys` is set (does not wait).
    func check(_ keys: [String]) throws -> Bool
    /// Deletes `key`; true if it existed.
    func deleteKey(_ key: String) throws -> Bool
}

extension Store {
    /// Sets `key` to the UTF-8 bytes of `value`.
    public func set(_ key: String, string value: String) throws { try set(key, Array(value.utf8)) }
    /// Returns the value of `key` as UTF-8, waiting with the store's timeout.
    public func getString(_ key: String, timeout: Duration? = nil) throws -> String {
        String(decoding: try get(key, timeout: timeout), as: UTF8.self)
    }
    /// Returns the value of `key`, waiting with the store's timeout.
    public func get(_ key: String) throws -> [UInt8] { try get(key, timeout: nil) }
    /// Waits with the store's timeout until every key in `keys` is set.
    public func wait(_ keys: [String]) throws { try wait(keys, timeout: nil) }
}

/// A view of a store that puts `prefix/` before every key, so groups do not collide
/// (`torch.distributed.PrefixStore`).
public final class PrefixStore: Store {
    /// The key prefix (without the trailing slash).
    public let prefix: String
    /// The wrapped store.
    public let base: any Store

    /// Wraps `base`, prefixing every key with `prefix + "/"`.
    public init(prefix: String, base: any Store) {
        self.prefix = prefix
        self.base = base
    }

    private func k(_ key: String) -> String { "\(prefix)/\(key)" }
    /// The wrapped store's timeout.
    public var timeout: Duration { base.timeout }
    /// Sets the prefixed key.
    public func set(_ key: String, _ value: [UInt8]) throws { try base.set(k(key), value) }
    /// Gets the prefixed key.
    public func get(_ key: String, timeout: Duration?) throws -> [UInt8] { try base.get(k(key), timeout: timeout) }
    /// Adds to the prefixed key.
    public func add(_ key: String, _ amount: Int64) throws -> Int64 { try base.add(k(key), amount) }
    /// Compare-and-set on the prefixed key.
    public func compareSet(_ key: String, expected: [UInt8], desired: [UInt8]) throws -> [UInt8] {
        try base.compareSet(k(key), expected: expected, desired: desired)
    }
    /// Waits for the prefixed keys.
    public func wait(_ keys: [String], timeout: Duration?) throws { try base.wait(keys.map(k), timeout: timeout) }
    /// Checks the prefixed keys.
    public func check(_ keys: [String]) throws -> Bool { try base.check(keys.map(k)) }
    /// Deletes the prefixed key.
    public func deleteKey(_ key: String) throws -> Bool { try base.deleteKey(k(key)) }
}
