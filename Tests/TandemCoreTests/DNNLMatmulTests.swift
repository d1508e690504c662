import Testing
@testable import TandemCore

@Suite struct DNNLMatmulTests {
    /// oneDNN takes bfloat16 products on this kind of machine (AVX512-BF16); elsewhere the
    /// float32 fallback is exercised instead, so this only reports.
    @Test func reportsWhetherOneDNNRunsBFloat16() {
        var a = [UInt16](repeating: BFloat16(Float(1)).bitPattern, count: 64 * 32)
        var b = [UInt16](repeating: BFloat16(Float(2)).bitPattern, count: 32 * 16)
        var c = [UInt16](repeating: 0, count: 64 * 16)
        let ran = a.withUnsafeMutableBytes { pa in b.withUnsafeMutableBytes { pb in c.withUnsafeMutableBytes { pc in
            DNNLMatmul.gemm(transA: false, transB: false, m: 64, n: 16, k: 32, a: pa.baseAddress!, lda: 32,
                            b: pb.baseAddress!, ldb: 16, c: pc.baseAddress!, ldc: 16)
        } } }
        print("oneDNN bfloat16 matmul available: \(ran)")
        if ran { #expect(c.allSatisfy { BFloat16(bitPattern: $0).floatValue == 64 }) }
    }
}
