import CBLAS
import CDNNL
import Foundation

/// What this machine's CPU offers the kernels and the routes Tandem takes because of it,
/// decided once per process from the CPU's features as oneDNN and OpenBLAS see them (so
/// `ONEDNN_MAX_CPU_ISA` and `OPENBLAS_CORETYPE` change them too). `tandem advise` prints it.
public struct KernelRoutes: Sendable {
    /// The instruction sets the kernels care about that the CPU reports, best first
    /// (`/proc/cpuinfo` flags: avx512f, avx512bw, avx512vl, avx512_bf16, avx2, fma, sse4_1).
    public let cpuFlags: [String]
    /// oneDNN's effective ISA after `ONEDNN_MAX_CPU_ISA`, e.g. `avx512_core_bf16`, `avx2`.
    public let oneDNNISA: String
    /// OpenBLAS's kernel after `OPENBLAS_CORETYPE`, e.g. `Cooperlake`, `Haswell`.
    public let openBLASCore: String
    /// Whether oneDNN runs 512-bit kernels (AVX-512 core or better).
    public let oneDNNHasAVX512: Bool
    /// Whether oneDNN runs bfloat16 products on the CPU's BF16 dot-product instructions.
    public let nativeBFloat16: Bool

    /// The routes, one line each: what runs where, and why.
    public var routes: [(name: String, choice: String)] {
        [
            ("float32 matmul", oneDNNHasAVX512
                ? "oneDNN for 128³ to 512²·1024 multiply-adds, OpenBLAS (\(openBLASCore)) otherwise"
                : "OpenBLAS (\(openBLASCore)) for every size: oneDNN's AVX2 matmul took 1.4-1.9x OpenBLAS's time"),
            ("large products", "split into row or column blocks over the intra-op threads, one OpenBLAS call each"),
            ("bfloat16 autocast", nativeBFloat16
                ? "oneDNN bfloat16 kernels on BF16 dot-product instructions"
                : oneDNNHasAVX512
                    ? "oneDNN bfloat16 kernels emulated on AVX-512 (no BF16 instructions): slower than float32"
                    : "no bfloat16 kernels on this ISA: products widen to float32 (exactly) and round back, slower than float32"),
            ("convolution", "oneDNN (\(oneDNNISA)) in its blocked layouts; im2col + OpenBLAS where oneDNN declines"),
            ("depthwise convolution", "Tandem's direct kernels where oneDNN would unfold the input for GEMM"),
            ("fused conv block batch norm", "Tandem's kernel on oneDNN's layout, statistics in Double (oneDNN's AVX2 batch norm was off by 1.1e-5)"),
        ]
    }

    /// The routes of this process.
    public static let current = KernelRoutes()

    init() {
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))
            .flatMap { $0.split(separator: "\n").first { $0.hasPrefix("flags") } }
            .map { Set($0.split(separator: " ").map(String.init)) } ?? []
        cpuFlags = ["avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx2", "fma", "sse4_1"].filter(flags.contains)
        let isa = dnnl_get_effective_cpu_isa()
        oneDNNISA = Self.name(of: isa)
        oneDNNHasAVX512 = isa.rawValue & dnnl_cpu_isa_avx512_core.rawValue == dnnl_cpu_isa_avx512_core.rawValue
        nativeBFloat16 = isa.rawValue & dnnl_cpu_isa_avx512_core_bf16.rawValue == dnnl_cpu_isa_avx512_core_bf16.rawValue
            && flags.contains("avx512_bf16")
        openBLASCore = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
    }

    private static func name(of isa: dnnl_cpu_isa_t) -> String {
        let names: [(dnnl_cpu_isa_t, String)] = [
            (dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"), (dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"),
            (dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"), (dnnl_cpu_isa_avx512_core, "avx512_core"),
            (dnnl_cpu_isa_avx2_vnni, "avx2_vnni"), (dnnl_cpu_isa_avx2, "avx2"), (dnnl_cpu_isa_avx, "avx"),
            (dnnl_cpu_isa_sse41, "sse41"),
        ]
        return names.first { isa.rawValue & $0.0.rawValue == $0.0.rawValue }?.1 ?? "isa 0x\(String(isa.rawValue, radix: 16))"
    }
}
