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

    /// Mid-size float32 products run on oneDNN (`DNNLMatmul.prefersFloat32`) where it has
    /// AVX-512 kernels (its AVX2 matmul is slower than OpenBLAS's: `KernelRoutes`); they agree
    /// with OpenBLAS within float32 rounding, transposed operands and batches included.
    @Test func float32ProductsAgreeWithOpenBLAS() throws {
        #expect(DNNLMatmul.prefersFloat32(m: 512, n: 512, k: 512) == KernelRoutes.current.oneDNNHasAVX512)
        #expect(!DNNLMatmul.prefersFloat32(m: 1024, n: 1024, k: 1024) && !DNNLMatmul.prefersFloat32(m: 8, n: 4096, k: 4096))
        let g = Generator(seed: 5)
        let (m, k, n) = (200, 160, 96)
        let a = Tensor.randn([3, m, k], generator: g), b = Tensor.randn([k, n], generator: g)
        let bt = try Tensor.randn([n, k], generator: g).t()
        for (lhs, rhs) in [(a, b), (a, bt), (try a.transpose(1, 2).contiguousStorage().transpose(1, 2), b)] {
            let got = try Tensor.matmul(lhs, rhs)
            // OpenBLAS, one batch at a time.
            let r = rhs.contiguousStorage().toFloatArray()
            for bi in 0..<3 {
                let l = try lhs.narrow(axis: 0, start: bi, length: 1).contiguousStorage().toFloatArray()
                var want = [Float](repeating: 0, count: m * n)
                l.withUnsafeBufferPointer { pl in r.withUnsafeBufferPointer { pr in want.withUnsafeMutableBufferPointer { pw in
                    Kernels.gemm(Float.self, transA: false, transB: false, m: m, n: n, k: k, a: pl.baseAddress!, lda: k,
                                 b: pr.baseAddress!, ldb: n, c: pw.baseAddress!, ldc: n)
                } } }
                let slice = try got.narrow(axis: 0, start: bi, length: 1).contiguousStorage().toFloatArray()
                let worst = zip(slice, want).map { Swift.abs($0 - $1) / (1 + Swift.abs($1)) }.max()!
                #expect(worst < 1e-5, "batch \(bi): \(worst)")
                // oneDNN's float32 product itself, whichever route `matmul` took on this ISA.
                var direct = [Float](repeating: 0, count: m * n)
                var (lc, rc) = (try lhs.narrow(axis: 0, start: bi, length: 1).contiguousStorage().toFloatArray(), r)
                let ran = lc.withUnsafeMutableBytes { pl in rc.withUnsafeMutableBytes { pr in direct.withUnsafeMutableBytes { pd in
                    DNNLMatmul.gemm(transA: false, transB: false, m: m, n: n, k: k, a: pl.baseAddress!, lda: k,
                                    b: pr.baseAddress!, ldb: n, c: pd.baseAddress!, ldc: n, float32: true)
                } } }
                #expect(ran)
                let worstDirect = zip(direct, want).map { Swift.abs($0 - $1) / (1 + Swift.abs($1)) }.max()!
                #expect(worstDirect < 1e-5, "oneDNN batch \(bi): \(worstDirect)")
            }
        }
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

@Suite struct HalfConversionTests {
    /// The branch-free float16 conversions agree with Swift's `Float16` bit for bit (NaNs as NaNs).
    @Test func everyHalfWidensExactly() {
        for h in 0...UInt16.max {
            let want = Float(Float16(bitPattern: h))
            let got = Float(bitPattern: Kernels.floatBits(fromHalfBits: h))
            #expect(want.isNaN ? got.isNaN : got.bitPattern == want.bitPattern, "half 0x\(String(h, radix: 16))")
        }
    }

    @Test func floatsNarrowLikeFloat16() {
        var patterns: [UInt32] = [0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0x7F80_0001, 0x477F_E000,
                                  0x477F_EFFF, 0x477F_F000, 0x4780_0000, 0x3880_0000, 0x387F_FFFF, 0x3300_0000,
                                  0x3300_0001, 0x32FF_FFFF, 0x3380_0000, 0x33C0_0000, 0x3F80_1000, 0x3F80_3000]
        var x: UInt32 = 12345
        for _ in 0..<300_000 { x = x &* 1_664_525 &+ 1_013_904_223; patterns.append(x) }
        // Dense around float16's range and subnormal boundary.
        for base: UInt32 in [0x3300_0000, 0x3880_0000, 0x477F_0000] { for d in 0..<20_000 { patterns.append(base &+ UInt32(d) &* 7) } }
        var mismatches = 0
        for p in patterns {
            let f = Float(bitPattern: p)
            let want = Float16(f), got = Float16(bitPattern: Kernels.halfBits(fromFloatBits: p))
            if want.isNaN ? !got.isNaN : got.bitPattern != want.bitPattern {
                mismatches += 1
                if mismatches < 5 { Issue.record("float 0x\(String(p, radix: 16)): got 0x\(String(got.bitPattern, radix: 16)), want 0x\(String(want.bitPattern, radix: 16))") }
            }
        }
        #expect(mismatches == 0)
    }
}
