/// Depthwise convolution (`groups == Cin == Cout`) computed directly, plane by plane.
///
/// Each output plane `[n, c]` is the sum over the kernel taps of the weight times the shifted
/// input plane, so every tap is one pass of `y[row] += w · x[row']` over the output positions
/// whose input lies inside the plane (no padding is materialised, taps that only see padding
/// cost nothing). im2col would unfold `kH·kW` copies of every plane instead, and oneDNN's
/// GEMM-based kernel does the same, which makes MambaOut's 7 × 7 depthwise convolutions on
/// 2 × 2 and 1 × 1 maps far slower there than here (docs/BENCHMARKS.md, issues 7 and 8).
extension Kernels {
    /// `y [N, C, Hout, Wout] = depthwise(x [N, C, H, W], w [C, 1, kH, kW]) + bias [C]`, all
    /// contiguous.
    static func depthwiseConvForward<T: FloatElement>(_ geo: ConvGeometry, x: UnsafePointer<T>, w: UnsafePointer<T>,
                                                      bias: UnsafePointer<T>?, y: UnsafeMutablePointer<T>) {
        let (inPlane, outPlane, channels) = (geo.height * geo.width, geo.outHeight * geo.outWidth, geo.outChannels)
        let taps = DepthwiseTap.all(geo)
        nonisolated(unsafe) let (xp, wp, bp, yp) = (x, w, bias, y)
        Parallel.forRanges(geo.batch * channels, costPerItem: outPlane * geo.kernelArea) { planes in
            for plane in planes {
                let c = plane % channels
                let dst = yp + plane * outPlane
                dst.update(repeating: bp?[c] ?? 0, count: outPlane)
                forEachRow(taps, geo) { tap, outRow, inRow, first, end in
                    let weight = wp[c * geo.kernelArea + tap]
                    let out = dst + outRow, src = xp + plane * inPlane + inRow
                    if geo.strideW == 1 {
                        for o in first..<end { out[o] += weight * src[o] }
                    } else {
                        for o in first..<end { out[o] += weight * src[o * geo.strideW] }
                    }
                }
            }
        }
    }

    /// The gradients of `depthwiseConvForward` that are asked for (`gx`, `gw`, `gb` non-nil),
    /// from `gy` shaped like the output; every buffer contiguous and fully written.
    static func depthwiseConvBackward<T: FloatElement>(_ geo: ConvGeometry, x: UnsafePointer<T>, w: UnsafePointer<T>,
                                                       gy: UnsafePointer<T>, gx: UnsafeMutablePointer<T>?,
                                                       gw: UnsafeMutablePointer<T>?, gb: UnsafeMutablePointer<T>?) {
        let (inPlane, outPlane, channels) = (geo.height * geo.width, geo.outHeight * geo.outWidth, geo.outChannels)
        let taps = DepthwiseTap.all(geo)
        nonisolated(unsafe) let (xp, wp, gyp, gxp, gwp, gbp) = (x, w, gy, gx, gw, gb)
        if let gxp {
            Parallel.forRanges(geo.batch * channels, costPerItem: outPlane * geo.kernelArea) { planes in
                for plane in planes {
                    let c = plane % channels
                    let dst = gxp + plane * inPlane
                    dst.update(repeating: 0, count: inPlane)
                    forEachRow(taps, geo) { tap, outRow, inRow, first, end in
                        let weight = wp[c * geo.kernelArea + tap]
                        let upstream = gyp + plane * outPlane + outRow, target = dst + inRow
                        if geo.strideW == 1 {
                            for o in first..<end { target[o] += weight * upstream[o] }
                        } else {
                            for o in first..<end { target[o * geo.strideW] += weight * upstream[o] }
                        }
                    }
                }
            }
        }
        guard gwp != nil || gbp != nil else { return }
        // One channel per item: its weights and bias sum over the batch without sharing.
        Parallel.forRanges(channels, costPerItem: geo.batch * outPlane * (geo.kernelArea + 1)) { range in
            for c in range {
                gwp?.advanced(by: c * geo.kernelArea).update(repeating: 0, count: geo.kernelArea)
                var biasTotal: T = 0
                for n in 0..<geo.batch {
                    let plane = n * channels + c
                    let upstream = gyp + plane * outPlane
                    if gbp != nil { biasTotal += sum(upstream, count: outPlane) }
                    guard let gwp else { continue }
                    forEachRow(taps, geo) { tap, outRow, inRow, first, end in
                        let a = upstream + outRow + first, b = xp + plane * inPlane + inRow + first * geo.strideW
                        gwp[c * geo.kernelArea + tap] += dot(a, b, count: end - first, strideB: geo.strideW)
                    }
                }
                gbp?[c] = biasTotal
            }
        }
    }

    /// Calls `body(tap, outRow, inRow, first, end)` for every tap of `taps` and output row
    /// whose input row lies inside the plane: output positions `outRow + o` and input positions
    /// `inRow + o·strideW` for `o` in `first..<end` (the columns whose input column is inside).
    /// `inRow` may be negative; only `inRow + o·strideW` for those `o` is a valid offset.
    @inline(__always)
    private static func forEachRow(_ taps: [DepthwiseTap], _ geo: ConvGeometry, _ body: (Int, Int, Int, Int, Int) -> Void) {
        for tap in taps {
            for r in tap.rows {
                body(tap.index, r * geo.outWidth, (r * geo.strideH + tap.rowShift) * geo.width + tap.colShift, tap.first, tap.end)
            }
        }
    }

    /// `Σ a[i]` with four independent partial sums.
    @inline(__always)
    private static func sum<T: FloatElement>(_ a: UnsafePointer<T>, count: Int) -> T {
        var (s0, s1, s2, s3): (T, T, T, T) = (0, 0, 0, 0)
        var i = 0
        while i + 4 <= count {
            s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]
            i += 4
        }
        while i < count { s0 += a[i]; i += 1 }
        return (s0 + s1) + (s2 + s3)
    }

    /// `Σ a[i] · b[i·strideB]` with four independent partial sums.
    @inline(__always)
    private static func dot<T: FloatElement>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, count: Int, strideB: Int) -> T {
        var (s0, s1, s2, s3): (T, T, T, T) = (0, 0, 0, 0)
        var i = 0
        while i + 4 <= count {
            s0 += a[i] * b[i * strideB]; s1 += a[i + 1] * b[(i + 1) * strideB]
            s2 += a[i + 2] * b[(i + 2) * strideB]; s3 += a[i + 3] * b[(i + 3) * strideB]
            i += 4
        }
        while i < count { s0 += a[i] * b[i * strideB]; i += 1 }
        return (s0 + s1) + (s2 + s3)
    }
}

/// A kernel tap that sees the input plane somewhere: the output rows and columns whose input
/// lies inside, and the shifts from output to input position. Worked out once per call, so that
/// tiny planes (MambaOut's 1 × 1 maps under a 7 × 7 kernel) pay only for the taps they use.
struct DepthwiseTap {
    var index: Int, rows: Range<Int>, rowShift: Int, first: Int, end: Int, colShift: Int

    static func all(_ geo: ConvGeometry) -> [DepthwiseTap] {
        var taps: [DepthwiseTap] = []
        for kh in 0..<geo.kernelH {
            let rowShift = kh * geo.dilationH - geo.padH
            let (r0, r1) = Kernels.validRange(offset: rowShift, stride: geo.strideH, size: geo.height, outSize: geo.outHeight)
            guard r0 < r1 else { continue }
            for kw in 0..<geo.kernelW {
                let colShift = kw * geo.dilationW - geo.padW
                let (first, end) = Kernels.validRange(offset: colShift, stride: geo.strideW, size: geo.width, outSize: geo.outWidth)
                guard first < end else { continue }
                taps.append(DepthwiseTap(index: kh * geo.kernelW + kw, rows: r0..<r1, rowShift: rowShift, first: first, end: end,
                                         colShift: colShift))
            }
        }
        return taps
    }
}

extension ConvGeometry {
    /// One input and one output channel per group (PyTorch's depthwise convolution with
    /// multiplier 1).
    var isDepthwise: Bool { groups > 1 && groups == inChannels && groups == outChannels }
}
