import CDNNL
import COpenMP
import Foundation
import Synchronization

/// float32 activations on oneDNN's eltwise primitive, forward and backward, over contiguous
/// buffers. oneDNN's JIT kernels evaluate erf and tanh with AVX-512 polynomials, where Swift's
/// `Kernels.map` calls libm once per element at baseline SSE width, a large share of the
/// training step of a model with GELU after every block, such as MambaOut (docs/BENCHMARKS.md,
/// issues 7 and 8).
///
/// The buffer is cut into blocks of `blockElements` (and one remainder), each a single-threaded
/// oneDNN call claimed by Tandem's threads, so primitives are cached for at most two sizes per
/// algorithm. Whatever oneDNN refuses, or would run with its reference implementation, returns
/// false so that the caller can use the Swift kernels.
enum DNNLEltwise {
    /// The activations routed here.
    enum Algorithm: Hashable, Sendable {
        /// `0.5·x·(1 + erf(x/√2))`.
        case geluErf
        /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
        case geluTanh
        /// `e^x` (attention's probabilities).
        case exp

        var kind: dnnl_alg_kind_t {
            switch self {
            case .geluErf: return dnnl_eltwise_gelu_erf
            case .geluTanh: return dnnl_eltwise_gelu_tanh
            case .exp: return dnnl_eltwise_exp
            }
        }
    }

    /// Smallest element count worth a oneDNN call (below it the Swift kernels win on overhead).
    static let minimumElements = 4096
    /// Elements per oneDNN call.
    static let blockElements = 1 << 15

    private struct Key: Hashable { let count: Int; let algorithm: Algorithm }

    private final class Plan: @unchecked Sendable {
        let md: dnnl_memory_desc_t
        let forward: DNNL.Primitive
        private let madeBackward = DNNL.MadeOnce<DNNL.Primitive>()
        private let algorithm: Algorithm

        init(md: dnnl_memory_desc_t, forward: DNNL.Primitive, algorithm: Algorithm) {
            self.md = md; self.forward = forward; self.algorithm = algorithm
        }

        /// The backward primitive (from the source, not the result), made on first use.
        func backward() -> DNNL.Primitive? {
            madeBackward.value(makeBackward)
        }

        private func makeBackward() -> DNNL.Primitive? {
            guard let engine = DNNL.engine, let attributes = DNNL.attributes else { return nil }
            var diff = md, data = md
            var desc = dnnl_eltwise_desc_t()
            var pd: dnnl_primitive_desc_t?
            guard dnnl_eltwise_backward_desc_init(&desc, algorithm.kind, &diff, &data, 0, 0) == dnnl_success,
                  dnnl_primitive_desc_create(&pd, &desc, attributes.handle, engine.handle, forward.pd) == dnnl_success,
                  let pd else { return nil }
            guard !DNNL.isReference(pd) else { dnnl_primitive_desc_destroy(pd); return nil }
            return DNNL.Primitive(pd: pd)
        }
    }

    private static let cache = DNNL.PlanCache<Key, Plan>(limit: 64)

    private static func plan(count: Int, algorithm: Algorithm) -> Plan? {
        cache.plan(for: Key(count: count, algorithm: algorithm), makePlan)
    }

    private static func makePlan(_ key: Key) -> Plan? {
        guard let engine = DNNL.engine, let attributes = DNNL.attributes,
              let md = DNNL.memoryDesc([key.count], dnnl_a) else { return nil }
        var data = md
        var desc = dnnl_eltwise_desc_t()
        var pd: dnnl_primitive_desc_t?
        guard dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_training, key.algorithm.kind, &data, 0, 0) == dnnl_success,
              dnnl_primitive_desc_create(&pd, &desc, attributes.handle, engine.handle, nil) == dnnl_success,
              let pd else { return nil }
        guard !DNNL.isReference(pd) else { dnnl_primitive_desc_destroy(pd); return nil }
        return DNNL.Primitive(pd: pd).map { Plan(md: md, forward: $0, algorithm: key.algorithm) }
    }

    /// Runs `body(offset, count)` on the blocks with `Parallel.forRanges`, each block a
    /// single-threaded oneDNN call. False when any block failed or `count` is too small.
    private static func forBlocks(_ count: Int, _ body: (_ start: Int, _ count: Int) -> Bool) -> Bool {
        guard count >= minimumElements else { return false }
        let blocks = (count + blockElements - 1) / blockElements
        let failed = Mutex(false)
        Parallel.forRanges(blocks, costPerItem: blockElements) { range in
            omp_set_num_threads(1)
            for block in range {
                let start = block * blockElements
                if !body(start, Swift.min(blockElements, count - start)) { failed.withLock { $0 = true } }
            }
        }
        return !failed.withLock { $0 }
    }

    /// e^x in place over `count` float32 values, as one single-threaded call for kernels that are
    /// already split over the thread team. False when oneDNN cannot run it.
    static func expInPlace(_ buffer: UnsafeMutableRawPointer, count: Int) -> Bool {
        guard let plan = plan(count: count, algorithm: .exp) else { return false }
        return DNNL.execute(plan.forward, [(DNNL.Arg.src, plan.md, buffer), (DNNL.Arg.dst, plan.md, buffer)])
    }

    /// `dst = f(src)` over `count` float32 values. False when oneDNN cannot run it (nothing
    /// useful is then in `dst`).
    static func forward(_ algorithm: Algorithm, src: UnsafeMutableRawPointer, dst: UnsafeMutableRawPointer, count: Int) -> Bool {
        forBlocks(count) { start, n in
            guard let plan = plan(count: n, algorithm: algorithm) else { return false }
            let offset = start * 4
            return DNNL.execute(plan.forward, [(DNNL.Arg.src, plan.md, src + offset), (DNNL.Arg.dst, plan.md, dst + offset)])
        }
    }

    /// `diffSrc = f′(src) · diffDst` over `count` float32 values. False when oneDNN cannot run it.
    static func backward(_ algorithm: Algorithm, src: UnsafeMutableRawPointer, diffDst: UnsafeMutableRawPointer,
                         diffSrc: UnsafeMutableRawPointer, count: Int) -> Bool {
        forBlocks(count) { start, n in
            guard let plan = plan(count: n, algorithm: algorithm), let primitive = plan.backward() else { return false }
            let offset = start * 4
            return DNNL.execute(primitive, [(DNNL.Arg.src, plan.md, src + offset), (DNNL.Arg.diffDst, plan.md, diffDst + offset),
                                            (DNNL.Arg.diffSrc, plan.md, diffSrc + offset)])
        }
    }
}

extension Kernels {
    /// `algorithm` applied to a float32 tensor of at least `DNNLEltwise.minimumElements` on
    /// oneDNN (a new contiguous tensor); nil for other tensors or when oneDNN refuses.
    static func eltwiseForwardDNNL(_ algorithm: DNNLEltwise.Algorithm, _ x: Tensor) -> Tensor? {
        guard x.dtype == .float32, x.count >= DNNLEltwise.minimumElements else { return nil }
        let src = x.contiguousStorage()
        let out = Tensor(uninitializedShape: x.shape, dtype: .float32)
        let done = withExtendedLifetime(src) { DNNLEltwise.forward(algorithm, src: src.rawElements, dst: out.rawElements, count: src.count) }
        return done ? out : nil
    }

    /// The gradient of `algorithm` at `x` for the output gradient `gradOut` on oneDNN; nil when
    /// the tensors do not qualify or oneDNN refuses.
    static func eltwiseBackwardDNNL(_ algorithm: DNNLEltwise.Algorithm, x: Tensor, gradOut: Tensor) -> Tensor? {
        guard x.dtype == .float32, x.count >= DNNLEltwise.minimumElements else { return nil }
        let src = x.contiguousStorage(), gy = (gradOut.dtype == .float32 ? gradOut : gradOut.to(.float32)).contiguousStorage()
        let gx = Tensor(uninitializedShape: x.shape, dtype: .float32)
        let done = withExtendedLifetime((src, gy)) {
            DNNLEltwise.backward(algorithm, src: src.rawElements, diffDst: gy.rawElements, diffSrc: gx.rawElements, count: src.count)
        }
        return done ? gx : nil
    }
}
