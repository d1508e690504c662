import CDNNL
import Synchronization

/// bfloat16 matrix products on oneDNN's matmul primitive (Debian's libdnnl 2.6): bfloat16
/// operands, float32 accumulation, a bfloat16 result. On CPUs with AVX512-BF16 (Zen 4,
/// Cooper Lake and later) oneDNN runs them on its BF16 dot-product instructions; Debian's
/// OpenBLAS has no `cblas_sbgemm` to do it. Primitives are cached per shape, layout and
/// thread count. Whatever oneDNN refuses, or would run with its naive reference
/// implementation, returns false so the caller can compute in float32 instead.
enum DNNLMatmul {
    private struct Key: Hashable {
        let m, n, k, lda, ldb, ldc, threads: Int
        let transA, transB: Bool
    }

    private final class Plan: @unchecked Sendable {
        let primitive: DNNL.Primitive
        let a, b, c: dnnl_memory_desc_t
        init(primitive: DNNL.Primitive, a: dnnl_memory_desc_t, b: dnnl_memory_desc_t, c: dnnl_memory_desc_t) {
            self.primitive = primitive; self.a = a; self.b = b; self.c = c
        }
    }

    private enum Entry { case plan(Plan), refused }
    private static let cache = Mutex<[Key: Entry]>([:])

    /// A bfloat16 matrix `[rows, cols]` stored row-major with leading dimension `ld`, or its
    /// transpose (stored `[cols, rows]`).
    private static func desc(rows: Int, cols: Int, ld: Int, transposed: Bool) -> dnnl_memory_desc_t? {
        var md = dnnl_memory_desc_t()
        let dims = [Int64(rows), Int64(cols)]
        let strides = transposed ? [Int64(1), Int64(ld)] : [Int64(ld), Int64(1)]
        guard dnnl_memory_desc_init_by_strides(&md, 2, dims, dnnl_bf16, strides) == dnnl_success else { return nil }
        return md
    }

    private static func makePlan(_ key: Key) -> Plan? {
        guard let engine = DNNL.engine, let attributes = DNNL.attributes,
              var a = desc(rows: key.m, cols: key.k, ld: key.lda, transposed: key.transA),
              var b = desc(rows: key.k, cols: key.n, ld: key.ldb, transposed: key.transB),
              var c = desc(rows: key.m, cols: key.n, ld: key.ldc, transposed: false) else { return nil }
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

    /// `C[m, n] = A[m, k] · B[k, n]` on bfloat16 buffers (row-major with leading dimensions,
    /// optionally transposed), accumulated in float32. False when oneDNN cannot run it fast.
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                     a: UnsafeMutableRawPointer, lda: Int, b: UnsafeMutableRawPointer, ldb: Int,
                     c: UnsafeMutableRawPointer, ldc: Int) -> Bool {
        let threads = DNNL.syncThreads()
        let key = Key(m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, threads: threads, transA: transA, transB: transB)
        let plan: Plan
        switch cache.withLock({ $0[key] }) {
        case .plan(let p)?: plan = p
        case .refused?: return false
        case nil:
            let made = makePlan(key)
            cache.withLock { table in
                if table.count >= 512 { table.removeAll() }
                table[key] = made.map { .plan($0) } ?? .refused
            }
            guard let made else { return false }
            plan = made
        }
        return DNNL.execute(plan.primitive, [(DNNL.Arg.src, plan.a, a), (DNNL.Arg.weights, plan.b, b), (DNNL.Arg.dst, plan.c, c)])
    }
}
