/// A reference-counted, 64-byte-aligned block of memory holding tensor elements.
///
/// `Tensor` is a value type over this class: views share a storage for reading, and
/// every write goes through `Tensor.makeUniquelyOwned()` first (copy-on-write).
final class TensorStorage: @unchecked Sendable {
    let bytes: UnsafeMutableRawPointer
    let byteCount: Int

    /// glibc returns every block above 128 KB to the kernel on free, so each step of a
    /// training loop would page-fault its activations in again. Keeping freed blocks in the
    /// heap (as PyTorch's caching allocators do) removes that cost. Runs once.
    private static let allocatorTuned: Bool = {
        #if os(Linux)
        _ = glibcMallopt(-3, 1 << 30)  // M_MMAP_THRESHOLD
        _ = glibcMallopt(-1, 1 << 30)  // M_TRIM_THRESHOLD
        #endif
        return true
    }()

    init(byteCount: Int) {
        _ = Self.allocatorTuned
        self.byteCount = byteCount
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
    }

    /// A storage whose bytes are all zero.
    static func zeroed(byteCount: Int) -> TensorStorage {
        let storage = TensorStorage(byteCount: byteCount)
        storage.bytes.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        return storage
    }

    deinit { bytes.deallocate() }
}

#if os(Linux)
/// glibc's `mallopt` (declared in malloc.h, which Swift's Glibc module does not export).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif
