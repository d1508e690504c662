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

    /// Reports whether oneDNN makes bfloat16 plans for the MNIST ConvNet's two convolutions.
    @Test func reportsWhetherOneDNNRunsBFloat16Convolution() {
        for cin in [1, 16] {
            let geo = ConvGeometry(batch: 64, inChannels: cin, height: 28 / (cin == 1 ? 1 : 2), width: 28 / (cin == 1 ? 1 : 2),
                                   outChannels: cin == 1 ? 16 : 32, groups: 1, kernelH: 5, kernelW: 5, strideH: 1, strideW: 1,
                                   padH: 2, padW: 2, dilationH: 1, dilationW: 1)
            let plan = DNNLConvPlan.plan(for: geo, hasBias: true, threads: 2, bfloat16: true)
            print("oneDNN bfloat16 convolution \(cin)→\(geo.outChannels): \(plan != nil), backward data \(plan?.backwardData() != nil), backward weights \(plan?.backwardWeights() != nil)")
        }
    }
}
