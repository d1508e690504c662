import CDNNL
import Synchronization

/// Matrix products on oneDNN's matmul primitive (Debian's libdnnl 2.6).
///
/// - bfloat16: bfloat16 operands, float32 accumulation, a bfloat16 result. On CPUs with
///   AVX512-BF16 (Zen 4, Cooper Lake and later) oneDNN runs them on its BF16 dot-product
///   instructions; Debian's OpenBLAS has no `cblas_sbgemm` to do it.
/// - float32, for mid-size products (`prefersFloat32`), where oneDNN's brgemm kernels beat
///   OpenBLAS's sgemm (see docs/BENCHMARKS.md, issue 2).
///
/// Primitives are cached per shape, layout, dtype and thread count. Whatever oneDNN
/// refuses, or would run with its naive reference implementation, returns false so the
/// caller can compute with OpenBLAS instead.
enum DNNLMatmul {
    private struct Key: Hashable {
        let m, n, k, lda, ldb, ldc, threads: Int
        let transA, transB, float32: Bool
    }

    private final class Plan: @unchecked Sendable {
        let primitive: DNNL.Primitive
        let a, b, c: dnnl_memory_desc_t
        init(primitive: DNNL.Primitive, a: dnnl_memory_desc_t, b: dnnl_memory_desc_t, c: dnnl_memory_desc_t) {
            self.primitive = primitive; self.a = a; self.b = b; self.c = c
        }
    }

    private static let cache = DNNL.PlanCache<Key, Plan>(limit: 512)

    /// A matrix `[rows, cols]` stored row-major with leading dimension `ld`, or its
    /// transpose (stored `[cols, rows]`).
    private static func desc(rows: Int, cols: Int, ld: Int, transposed: Bool, type: dnnl_data_type_t) -> dnnl_memory_desc_t? {
        var md = dnnl_memory_desc_t()
        let dims = [Int64(rows), Int64(cols)]
        let strides = transposed ? [Int64(1), Int64(ld)] : [Int64(ld), Int64(1)]
        guard dnnl_memory_desc_init_by_strides(&md, 2, dims, type, strides) == dnnl_success else { return nil }
        return md
    }

    private static func makePlan(_ key: Key) -> Plan? {
        guard let engine = DNNL.engine, let attributes = DNNL.attributes,
              case let type = key.float32 ? dnnl_f32 : dnnl_bf16,
              var a = desc(rows: key.m, cols: key.k, ld: key.lda, transposed: key.transA, type: type),
              var b = desc(rows: key.k, cols: key.n, ld: key.ldb, transposed: key.transB, type: type),
              var c = desc(rows: key.m, cols: key.n, ld: key.ldc, transposed: false, type: type) else { return nil }
        var op = dnnl_matmul_desc_t()
        guard dnnl_matmul_desc_init(&op, &a, &b, nil, &c) == dnnl_success else { return nil }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, &op, attributes.handle, engine.handle, nil) == dnnl_success, let pd else { return nil }
        if DNNL.isReference(pd) {
            dnnl_primitive_desc_destroy(pd)
            return nil
        }
        guard let primitive = DNNL.Primitive(pd: pd) else { return nil }
        return Plan(primitive: primitive, a: a, b: b, c: c)
    }

    /// Whether a float32 product of this size runs faster on oneDNN than on OpenBLAS: with
    /// oneDNN's AVX-512 kernels, from 128³ to 512²·1024 multiply-adds, each side at least 32;
    /// with its AVX2 kernels never (`KernelRoutes`). The window was measured on Zen 4.
    static func prefersFloat32(m: Int, n: Int, k: Int) -> Bool {
        let work = m * n * k
        return KernelRoutes.current.oneDNNHasAVX512 && Swift.min(m, n, k) >= 32 && work >= 128 * 128 * 128
            && work <= 512 * 512 * 1024
    }

    /// `C[m, n] = A[m, k] · B[k, n]` on bfloat16 buffers accumulated in float32, or on float32
    /// buffers (`float32`); row-major with leading dimensions, optionally transposed. False
    /// when oneDNN cannot run it fast.
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                     a: UnsafeMutableRawPointer, lda: Int, b: UnsafeMutableRawPointer, ldb: Int,
                     c: UnsafeMutableRawPointer, ldc: Int, float32: Bool = false) -> Bool {
        let threads = DNNL.syncThreads()
        let key = Key(m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, threads: threads, transA: transA, transB: transB,
                      float32: float32)
        guard let plan = cache.plan(for: key, makePlan) else { return false }
        return DNNL.execute(plan.primitive, [(DNNL.Arg.src, plan.a, a), (DNNL.Arg.weights, plan.b, b), (DNNL.Arg.dst, plan.c, c)])
    }
}
