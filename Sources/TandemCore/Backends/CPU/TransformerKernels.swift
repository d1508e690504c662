import Foundation

/// The element-wise kernels of Transformer layers: rotary position embeddings, seeded dropout
/// and embedding rows (gather forward, scatter-add backward).
extension Kernels {
    /// The rotation angles of rotary embeddings as `cos`/`sin` tables `[L, D/2]` (float64):
    /// angle(position p, pair i) = p · θ^(−2i/D), the Hugging Face LLaMA convention.
    static func rotaryTables(positions: [Int], headDim d: Int, theta: Double) -> (cos: [Double], sin: [Double]) {
        let half = d / 2
        var cos = [Double](repeating: 0, count: positions.count * half), sin = cos
        for (row, position) in positions.enumerated() {
            for i in 0..<half {
                let angle = Double(position) * Foundation.pow(theta, -Double(2 * i) / Double(d))
                cos[row * half + i] = Foundation.cos(angle)
                sin[row * half + i] = Foundation.sin(angle)
            }
        }
        return (cos, sin)
    }

    /// Rotates contiguous `x [rows, L, D]` by the tables: with halves x₁, x₂ of each row,
    /// out = (x₁·c − x₂·s, x₂·c + x₁·s) (`inverse`: the transposed rotation, the backward pass).
    static func rotary(_ x: Tensor, cos: [Double], sin: [Double], length: Int, inverse: Bool) -> Tensor {
        let d = x.shape.last!, half = d / 2, rows = x.count / Swift.max(d * length, 1)
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        let sign: Double = inverse ? -1 : 1
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (src, dst) = (x.elementPointer(T.self), out.elementPointer(T.self))
            let c = cos.map { T($0) }, s = sin.map { T($0 * sign) }
            c.withUnsafeBufferPointer { cp in
                s.withUnsafeBufferPointer { sp in
                    nonisolated(unsafe) let (cp, sp) = (cp, sp)
                    Parallel.forRanges(rows * length, costPerItem: d * 4) { range in
                        for r in range {
                            let t = (r % length) * half, base = r * d
                            for i in 0..<half {
                                let a = src[base + i], b = src[base + half + i], ci = cp[t + i], si = sp[t + i]
                                dst[base + i] = a * ci - b * si
                                dst[base + half + i] = b * ci + a * si
                            }
                        }
                    }
                }
            }
        }
        if x.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return out
    }

    /// The scale of element `index` under seeded dropout: 1/(1 − p) when kept, else 0. A hash of
    /// the seed and the index (splitmix64), so the backward pass regenerates the mask.
    @inline(__always) static func dropoutScale(seed: UInt64, index: Int, p: Double) -> Double {
        var z = seed &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) * 0x1.0p-53 >= p ? 1 / (1 - p) : 0
    }

    /// Contiguous `x` times its seeded dropout scales (the forward and the backward pass alike).
    static func seededDropout(_ x: Tensor, p: Double, seed: UInt64) -> Tensor {
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (src, dst) = (x.elementPointer(T.self), out.elementPointer(T.self))
            Parallel.forRanges(x.count, costPerItem: 8) { range in
                for i in range { dst[i] = src[i] * T(dropoutScale(seed: seed, index: i, p: p)) }
            }
        }
        if x.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return out
    }

    /// Rows `indices` of contiguous `weight [V, D]` → `[N, D]` (indices already checked).
    static func embeddingRows(_ weight: Tensor, _ indices: [Int]) -> Tensor {
        let d = weight.shape[1]
        let out = Tensor(uninitializedShape: [indices.count, d], dtype: weight.dtype)
        let bytes = d * weight.dtype.byteSize
        nonisolated(unsafe) let (src, dst) = (UnsafeRawPointer(weight.elementPointer(UInt8.self)), UnsafeMutableRawPointer(out.elementPointer(UInt8.self)))
        indices.withUnsafeBufferPointer { ip in
            nonisolated(unsafe) let ip = ip
            Parallel.forRanges(indices.count, costPerItem: d) { range in
                for n in range { (dst + n * bytes).copyMemory(from: src + ip[n] * bytes, byteCount: bytes) }
            }
        }
        return out
    }

    /// dL/d(weight) `[V, D]` of an embedding lookup: row `indices[n]` accumulates row n of
    /// contiguous `gradOut [N, D]`. The threads split the columns, so no two write one element;
    /// the cost is V·D (zeroing) plus N·D, whatever the vocabulary.
    static func embeddingBackward(_ gradOut: Tensor, _ indices: [Int], vocabulary: Int) -> Tensor {
        let d = gradOut.shape.last!
        let grad = Tensor.zeros([vocabulary, d], dtype: gradOut.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (src, dst) = (gradOut.elementPointer(T.self), grad.elementPointer(T.self))
            indices.withUnsafeBufferPointer { ip in
                nonisolated(unsafe) let ip = ip
                let blocks = (d + 63) / 64
                Parallel.forRanges(blocks, costPerItem: indices.count * 64) { range in
                    let lo = range.lowerBound * 64, hi = Swift.min(d, range.upperBound * 64)
                    for n in 0..<ip.count {
                        let row = dst + ip[n] * d, g = src + n * d
                        for j in lo..<hi { row[j] += g[j] }
                    }
                }
            }
        }
        if gradOut.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return grad
    }
}
