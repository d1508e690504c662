import Testing
@testable import TandemCore
import TandemTestSupport

/// The routes follow the ISA oneDNN runs: scripts/isa_matrix.sh runs this at each level.
@Suite struct KernelRoutesTests {
    @Test func routesFollowOneDNNsISA() {
        let routes = KernelRoutes.current
        let limited = ["AVX2", "AVX", "SSE41"].contains(ISA.oneDNNLimit ?? "")
        if limited { #expect(!routes.oneDNNHasAVX512 && !routes.nativeBFloat16, "\(routes.oneDNNISA)") }
        if !routes.cpuFlags.contains("avx512f") { #expect(!routes.oneDNNHasAVX512, "\(routes.oneDNNISA)") }
        #expect(!routes.openBLASCore.isEmpty && !routes.routes.isEmpty)
        // Mid-size float32 products go to oneDNN only with its AVX-512 kernels.
        #expect(DNNLMatmul.prefersFloat32(m: 512, n: 512, k: 512) == routes.oneDNNHasAVX512)
        #expect(!DNNLMatmul.prefersFloat32(m: 16, n: 16, k: 16))
    }
}
