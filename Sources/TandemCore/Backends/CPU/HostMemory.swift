#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// Where tensor elements and oneDNN's layout buffers live: glibc's heap, with large blocks on
/// transparent huge pages.
///
/// A training step streams several activations of megabytes each through memory-bound kernels
/// (batch norm, pooling, layout reorders). On 4 KB pages every 4 KB of such a stream costs a
/// TLB miss and stops the hardware prefetcher; on 2 MB pages neither happens. So the first
/// time a block of at least `hugePageThreshold` bytes lands on a 2 MB page of the address space,
/// that page is advised `MADV_HUGEPAGE` (its untouched parts then fault in as huge pages) and
/// collapsed with `MADV_COLLAPSE` (its touched parts are copied into one huge page now, instead
/// of whenever the kernel's background collapser comes by). Freed blocks stay in the heap and
/// are reused, so each 2 MB page is handled once per process and the collapses cost only a
/// run's first steps (docs/BENCHMARKS.md, issue 5). This is the effect of glibc's
/// `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (which can only be set before the process starts) and
/// of PyTorch's `THP_MEM_ALLOC_ENABLE=1`. The kernel honours the advice when its THP mode is
/// `madvise` or `always` (Debian's default is `madvise`; `MADV_COLLAPSE` needs Linux 6.1, and
/// on older kernels the call fails harmlessly). Nothing is advised when the system's mode is
/// `never` or `TANDEM_HUGE_PAGES=0`.
enum HostMemory {
    /// 2 MB, the huge page size of x86-64 (and of arm64 with 4 KB base pages).
    static let hugePageShift = 21
    /// Allocating a block of this size or more puts its 2 MB pages on huge pages.
    static let hugePageThreshold = 1 << 20
    /// glibc maps blocks of this size or more on their own, and unmaps them on free.
    static let mmapThreshold: Int32 = 1 << 30

    /// Settings made once, before the first block; true when huge pages are wanted.
    ///
    /// glibc returns every block above 128 KB to the kernel on free, so each step of a
    /// training loop would page-fault its activations in again. Keeping freed blocks in the
    /// heap (as PyTorch's caching allocators do) removes that cost. `TANDEM_HUGE_PAGES=0`
    /// keeps every block on ordinary pages.
    static let hugePagesEnabled: Bool = {
        #if os(Linux)
        _ = glibcMallopt(-3, mmapThreshold)  // M_MMAP_THRESHOLD
        _ = glibcMallopt(-1, 1 << 30)  // M_TRIM_THRESHOLD
        let wanted: Bool
        do {
            wanted = try hugePagesPolicy(ProcessInfo.processInfo.environment)
        } catch {
            // An allocator cannot throw: say so once and keep the default. `tandem` refuses to start.
            FileHandle.standardError.write(Data("tandem: \(error); using huge pages\n".utf8))
            wanted = true
        }
        // MADV_COLLAPSE ignores the system's THP mode; an administrator's "never" is respected here.
        return wanted && !systemForbidsHugePages()
        #else
        return false
        #endif
    }()

    /// `TANDEM_HUGE_PAGES` in `environment`: unset or `1` → true, `0` → false; any other value
    /// throws `TensorError.invalidArgument` naming the variable and the values it takes.
    static func hugePagesPolicy(_ environment: [String: String]) throws -> Bool {
        switch environment["TANDEM_HUGE_PAGES"] {
        case nil, "1": return true
        case "0": return false
        case let value?:
            throw TensorError.invalidArgument(op: "TANDEM_HUGE_PAGES",
                                              message: "'\(value)' is not 0 (ordinary pages) or 1 (huge pages, the default)")
        }
    }

    #if os(Linux)
    /// True when `/sys/kernel/mm/transparent_hugepage/enabled` selects `[never]`.
    private static func systemForbidsHugePages() -> Bool {
        guard let file = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r") else { return false }
        defer { fclose(file) }
        var bytes = [UInt8](repeating: 0, count: 128)
        let count = fread(&bytes, 1, bytes.count, file)
        return String(decoding: bytes.prefix(count), as: UTF8.self).contains("[never]")
    }
    #endif

    /// The 2 MB pages (address >> 21) already advised and collapsed.
    private static let hugePages = Mutex<Set<UInt>>([])

    /// At least `byteCount` bytes (at least 1), 64-byte aligned; free with `deallocate`.
    static func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
        let wantHugePages = hugePagesEnabled  // also makes the allocator settings first
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(byteCount, 1), alignment: 64)
        if wantHugePages && byteCount >= hugePageThreshold { useHugePages(pointer, byteCount: byteCount) }
        return pointer
    }

    /// Frees a block from `allocate`.
    static func deallocate(_ pointer: UnsafeMutableRawPointer) {
        pointer.deallocate()
    }

    private static func useHugePages(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        #if os(Linux)
        if byteCount >= mmapThreshold {
            // A mapping of its own, untouched: the advice alone makes its faults huge. It is
            // unmapped on free, so its pages are not remembered.
            let start = UInt(bitPattern: pointer) & ~UInt(4095)
            if let address = UnsafeMutableRawPointer(bitPattern: start) {
                _ = madvise(address, Int(UInt(bitPattern: pointer) + UInt(byteCount) - start), MADV_HUGEPAGE)
            }
            return
        }
        let first = UInt(bitPattern: pointer) >> hugePageShift
        let last = (UInt(bitPattern: pointer) + UInt(byteCount) - 1) >> hugePageShift
        // Nearly every call finds all its pages seen: collect without allocating then.
        let fresh = hugePages.withLock { seen in
            var pages: [UInt] = []
            for page in first...last where seen.insert(page).inserted { pages.append(page) }
            return pages
        }
        for page in fresh {
            guard let address = UnsafeMutableRawPointer(bitPattern: page << hugePageShift) else { continue }
            // Advice only: a failure (a page reaching past the heap, an old kernel) keeps 4 KB pages.
            _ = madvise(address, 1 << hugePageShift, MADV_HUGEPAGE)
            _ = madvise(address, 1 << hugePageShift, 25)  // MADV_COLLAPSE (Linux 6.1; not in glibc 2.36's headers)
        }
        #endif
    }
}

#if os(Linux)
/// glibc's `mallopt` (declared in malloc.h, which Swift's Glibc module does not export).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif
