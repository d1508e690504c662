import Synchronization

/// A reference-counted, 64-byte-aligned block of memory holding tensor elements.
///
/// `Tensor` is a value type over this class: views share a storage for reading, and
/// every write goes through `Tensor.makeUniquelyOwned()` first (copy-on-write).
final class TensorStorage: @unchecked Sendable {
    let bytes: UnsafeMutableRawPointer
    let byteCount: Int

    init(byteCount: Int) {
        self.byteCount = byteCount
        bytes = HostMemory.allocate(byteCount: byteCount)
    }

    /// A storage whose bytes are all zero.
    static func zeroed(byteCount: Int) -> TensorStorage {
        let storage = TensorStorage(byteCount: byteCount)
        storage.bytes.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        return storage
    }

    /// Counts `Tensor.makeUniquelyOwned` copies (`Tensor.copyOnWriteCount`).
    static let copiesOnWrite = Atomic<Int>(0)

    deinit { HostMemory.deallocate(bytes) }
}
