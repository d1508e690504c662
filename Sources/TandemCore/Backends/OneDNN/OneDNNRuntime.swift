import CDNNL
import COpenMP
import Foundation
import Synchronization

/// The oneDNN runtime every oneDNN kernel shares (Debian's libdnnl 2.6, C API): the engine,
/// streams, memory descriptors and buffers, primitive creation and execution, and the
/// once-per-key caches of primitives. The kernels (convolution, the fused conv blocks,
/// eltwise, matmul, softmax) are in the other files of this folder.
enum DNNL {
    /// Argument indices of `dnnl_types.h` (the `DNNL_ARG_*` macros).
    enum Arg {
        static let src: Int32 = 1, src1: Int32 = 2, dst: Int32 = 17, weights: Int32 = 33, bias: Int32 = 41
        static let diffSrc: Int32 = 129, diffDst: Int32 = 145, diffWeights: Int32 = 161, diffBias: Int32 = 169
        static let scratchpad: Int32 = 80
        static let mean: Int32 = 49, variance: Int32 = 50, scale: Int32 = 51, shift: Int32 = 52, workspace: Int32 = 64
        static let diffScale: Int32 = 255, diffShift: Int32 = 256
    }

    /// The CPU engine, or nil when oneDNN cannot create one.
    final class Engine: @unchecked Sendable {
        let handle: dnnl_engine_t
        init?() {
            var engine: dnnl_engine_t?
            guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success, let engine else { return nil }
            handle = engine
        }
    }

    static let engine: Engine? = Engine()

    /// Primitive attributes with a user-managed scratchpad. Debian's oneDNN is built without
    /// `DNNL_ENABLE_CONCURRENT_EXEC`, so its library scratchpad is thread-local to the thread
    /// that created the primitive; cached primitives run on any thread, so each execution
    /// passes its own scratchpad instead.
    final class Attributes: @unchecked Sendable {
        let handle: dnnl_primitive_attr_t
        init?() {
            var attr: dnnl_primitive_attr_t?
            guard dnnl_primitive_attr_create(&attr) == dnnl_success, let attr else { return nil }
            guard dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success else {
                dnnl_primitive_attr_destroy(attr)
                return nil
            }
            handle = attr
        }
    }

    static let attributes: Attributes? = Attributes()

    /// Sets the calling thread's OpenMP team size to Tandem's thread count (OpenMP keeps it
    /// per thread, and Tandem's callers may run on any thread).
    @inline(__always) static func syncThreads() -> Int {
        let n = Tandem.numThreads
        omp_set_num_threads(Int32(n))
        return n
    }

    /// A 64-byte-aligned buffer in one of oneDNN's layouts.
    final class Buffer: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        init(bytes: Int) { pointer = HostMemory.allocate(byteCount: Swift.max(bytes, 64)) }
        /// The buffer as float32 elements.
        var floats: UnsafeMutablePointer<Float> { pointer.assumingMemoryBound(to: Float.self) }
        deinit { HostMemory.deallocate(pointer) }
    }

    /// A memory descriptor in a fixed format (float32 unless told).
    static func memoryDesc(_ dims: [Int], _ tag: dnnl_format_tag_t, _ type: dnnl_data_type_t = dnnl_f32) -> dnnl_memory_desc_t? {
        var md = dnnl_memory_desc_t()
        let d = dims.map(Int64.init)
        guard dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), d, type, tag) == dnnl_success else { return nil }
        return md
    }

    static func equal(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var a = a, b = b
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    static func byteSize(_ md: dnnl_memory_desc_t) -> Int {
        var md = md
        return Int(dnnl_memory_desc_get_size(&md))
    }

    /// Runs `primitive` on memory objects wrapping the given pointers, and waits.
    static func execute(_ primitive: Primitive, _ args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)]) -> Bool {
        guard let engine else { return false }
        let scratchpad = primitive.scratchpadBytes > 0 ? Buffer(bytes: primitive.scratchpadBytes) : nil
        var args = args
        if let scratchpad { args.append((Arg.scratchpad, primitive.scratchpad, scratchpad.pointer)) }
        defer { withExtendedLifetime(scratchpad) {} }
        var memories: [dnnl_memory_t] = []
        defer { for m in memories { dnnl_memory_destroy(m) } }
        var execArgs: [dnnl_exec_arg_t] = []
        for (arg, desc, pointer) in args {
            var md = desc
            var memory: dnnl_memory_t?
            guard dnnl_memory_create(&memory, &md, engine.handle, pointer) == dnnl_success, let memory else { return false }
            memories.append(memory)
            execArgs.append(dnnl_exec_arg_t(arg: arg, memory: memory))
        }
        var stream: dnnl_stream_t?
        guard dnnl_stream_create(&stream, engine.handle, dnnl_stream_default_flags.rawValue) == dnnl_success,
              let stream else { return false }
        defer { dnnl_stream_destroy(stream) }
        let status = dnnl_primitive_execute(primitive.handle, stream, Int32(execArgs.count), execArgs)
        return status == dnnl_success && dnnl_stream_wait(stream) == dnnl_success
    }

    /// True when oneDNN fell back to a reference (naive loop) implementation, which is slower
    /// than im2col + GEMM.
    static func isReference(_ pd: dnnl_primitive_desc_t) -> Bool {
        var info: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info) == dnnl_success, let info else { return false }
        return String(cString: info).hasPrefix("ref")
    }

    /// True when oneDNN picked a depthwise convolution kernel built on GEMM (it unfolds the
    /// input like im2col); `Kernels.depthwiseConvForward` and its backward are faster.
    static func isSlowDepthwise(_ pd: dnnl_primitive_desc_t, _ geo: ConvGeometry) -> Bool {
        guard geo.isDepthwise else { return false }
        var info: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info) == dnnl_success, let info else { return false }
        return String(cString: info).contains("gemm")
    }

    /// The queried memory descriptor of a primitive descriptor.
    static func query(_ pd: dnnl_primitive_desc_t, _ what: dnnl_query_t) -> dnnl_memory_desc_t? {
        dnnl_primitive_desc_query_md(pd, what, 0)?.pointee
    }

    /// A primitive with its descriptor.
    final class Primitive: @unchecked Sendable {
        let pd: dnnl_primitive_desc_t
        let handle: dnnl_primitive_t
        /// The scratchpad layout and size (0 when none is needed).
        let scratchpad: dnnl_memory_desc_t
        let scratchpadBytes: Int
        /// Takes ownership of `pd`; nil (and `pd` destroyed) when the primitive cannot be made.
        init?(pd: dnnl_primitive_desc_t) {
            var primitive: dnnl_primitive_t?
            guard dnnl_primitive_create(&primitive, pd) == dnnl_success, let primitive else {
                dnnl_primitive_desc_destroy(pd)
                return nil
            }
            self.pd = pd
            handle = primitive
            scratchpad = DNNL.query(pd, dnnl_query_scratchpad_md) ?? dnnl_memory_desc_t()
            scratchpadBytes = DNNL.byteSize(scratchpad)
        }
        deinit {
            dnnl_primitive_destroy(handle)
            dnnl_primitive_desc_destroy(pd)
        }
    }

    /// A reorder between two layouts of the same tensor.
    final class Reorder: @unchecked Sendable {
        let from: dnnl_memory_desc_t, to: dnnl_memory_desc_t
        let primitive: Primitive

        init?(from: dnnl_memory_desc_t, to: dnnl_memory_desc_t) {
            guard let engine else { return nil }
            var f = from, t = to
            var pd: dnnl_primitive_desc_t?
            guard let attributes = DNNL.attributes,
                  dnnl_reorder_primitive_desc_create(&pd, &f, engine.handle, &t, engine.handle, attributes.handle) == dnnl_success,
                  let pd, let primitive = Primitive(pd: pd) else { return nil }
            self.from = from
            self.to = to
            self.primitive = primitive
        }

        func run(_ source: UnsafeMutableRawPointer, _ destination: UnsafeMutableRawPointer) -> Bool {
            execute(primitive, [(Arg.src, from, source), (Arg.dst, to, destination)])
        }
    }

    /// Plain data at `plain` in the layout `wanted`: what the forward pass kept in layout `kept`
    /// (`saved`, or `plain` itself when it kept no copy) when `wanted` is that layout, else a
    /// new buffer made by `conversion`. nil when oneDNN cannot reorder, or when there is no
    /// plain data (`plain` nil: the forward pass only had `saved`) and `wanted` is not `kept`.
    static func reuseOrConvert(_ plain: UnsafeMutableRawPointer?, to wanted: dnnl_memory_desc_t, kept: dnnl_memory_desc_t,
                               saved: Buffer?, conversion: Conversion) -> (UnsafeMutableRawPointer, Buffer?)? {
        guard equal(wanted, kept) else { return plain.flatMap { conversion.convert($0) } }
        if let saved { return (saved.pointer, saved) }
        return plain.map { ($0, nil) }
    }

    /// How data moves between a plain layout and a primitive's layout: nothing to do
    /// (`.same`) or a reorder. nil when oneDNN cannot reorder.
    enum Conversion {
        case same
        case reorder(Reorder)

        init?(from: dnnl_memory_desc_t, to: dnnl_memory_desc_t) {
            if DNNL.equal(from, to) { self = .same; return }
            guard let r = Reorder(from: from, to: to) else { return nil }
            self = .reorder(r)
        }

        /// The data in the target layout: `source` itself, or a new buffer.
        func convert(_ source: UnsafeMutableRawPointer) -> (UnsafeMutableRawPointer, Buffer?)? {
            switch self {
            case .same: return (source, nil)
            case .reorder(let r):
                let buffer = Buffer(bytes: DNNL.byteSize(r.to))
                guard r.run(source, buffer.pointer) else { return nil }
                return (buffer.pointer, buffer)
            }
        }

        /// Where a primitive should write so that `finish` lands the result at `destination`.
        func target(_ destination: UnsafeMutableRawPointer) -> (UnsafeMutableRawPointer, Buffer?) {
            switch self {
            case .same: return (destination, nil)
            case .reorder(let r): let b = Buffer(bytes: DNNL.byteSize(r.from)); return (b.pointer, b)
            }
        }

        /// Moves a result written to `target` into `destination` (plain).
        func finish(_ target: UnsafeMutableRawPointer, _ destination: UnsafeMutableRawPointer) -> Bool {
            switch self {
            case .same: return true
            case .reorder(let r): return r.run(target, destination)
            }
        }
    }

    /// Plans by key, made on first use; a refusal (nil) is remembered too. The table is emptied
    /// when it reaches `limit` entries (shapes in training loops repeat; this bounds odd workloads).
    final class PlanCache<Key: Hashable & Sendable, Plan: Sendable>: Sendable {
        private let table = Mutex<[Key: Plan?]>([:])
        private let limit: Int

        init(limit: Int) { self.limit = limit }

        /// The plan for `key`, made by `make` on the first request (outside the lock).
        func plan(for key: Key, _ make: (Key) -> Plan?) -> Plan? {
            if let entry = table.withLock({ $0[key] }) { return entry }
            let made = make(key)
            table.withLock { entries in
                if entries.count >= limit { entries.removeAll() }
                entries[key] = .some(made)
            }
            return made
        }
    }

    /// A primitive (or anything) made on first use under a lock; a refusal (nil) is remembered,
    /// so it is not tried again. Backward primitives are made this way on the first backward pass.
    final class MadeOnce<Value>: @unchecked Sendable {
        private enum State { case notYet, made(Value), refused }
        private let lock = NSLock()
        private var state = State.notYet

        /// The value, made by `make` on the first call.
        func value(_ make: () -> Value?) -> Value? {
            lock.lock(); defer { lock.unlock() }
            switch state {
            case .made(let v): return v
            case .refused: return nil
            case .notYet:
                let made = make()
                state = made.map { .made($0) } ?? .refused
                return made
            }
        }
    }
}

