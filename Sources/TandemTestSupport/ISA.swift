import Foundation

/// What the instruction-set limit of this run (`ONEDNN_MAX_CPU_ISA`, scripts/isa_matrix.sh)
/// means for tests whose expectations depend on it.
public enum ISA {
    /// oneDNN's instruction-set limit, uppercased (nil: the CPU's best).
    public static var oneDNNLimit: String? {
        ProcessInfo.processInfo.environment["ONEDNN_MAX_CPU_ISA"].map { $0.uppercased() }
    }

    /// Whether oneDNN can pass a fused convolution block's pooled output to the next block in
    /// its own layout (`Tensor.fusedConvBlocks` with several blocks). Its AVX2 and AVX-512
    /// convolutions write and read `nChw8c`/`nChw16c` alike; its SSE4.1 kernels write the
    /// MNIST ConvNet's first block in NCHW but read the second block's input in `nChw8c`, so
    /// the blocks there fuse one at a time (same results, one reorder more).
    public static var oneDNNChainsConvBlocks: Bool {
        !["SSE41", "AVX"].contains(oneDNNLimit ?? "")
    }
}
