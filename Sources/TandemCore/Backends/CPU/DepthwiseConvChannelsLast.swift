/// Depthwise convolution with stride 1 and no dilation on channels-last tensors
/// (`[N, H, W, C]`), the layout MambaOut's blocks keep: every tap is one
/// `y[n, oh, ow, :] += w[:, tap] · x[n, oh + dh, ow + dw, :]` over the contiguous channels, so
/// the loops vectorise across channels whatever the map size (1 × 1 maps included) and no
/// permutation to NCHW and back is needed.
extension Kernels {
    /// The weights `[C, 1, kH, kW]` as `[kH·kW, C]` (one contiguous row of channels per tap).
    private static func tapMajor<T: FloatElement>(_ w: UnsafePointer<T>, channels: Int, taps: Int) -> [T] {
        var out = [T](repeating: 0, count: channels * taps)
        for c in 0..<channels { for t in 0..<taps { out[t * channels + c] = w[c * taps + t] } }
        return out
    }

    /// For output row or column `o` of a map of `size` with `padding` on both sides: the taps
    /// `k` in `0..<kernel` whose input `o + k − padding` lies inside.
    @inline(__always)
    private static func validTaps(_ o: Int, size: Int, kernel: Int, padding: Int) -> Range<Int> {
        let (first, end) = validRange(offset: o - padding, stride: 1, size: size, outSize: kernel)
        return first..<end
    }

    /// `y [N, Hout, Wout, C] = depthwise(x [N, H, W, C], w [C, 1, kH, kW]) + bias [C]`, stride 1,
    /// zero padding `padH`, `padW`; contiguous buffers.
    static func depthwiseChannelsLastForward<T: FloatElement>(_ geo: ConvGeometry, x: UnsafePointer<T>, w: UnsafePointer<T>,
                                                              bias: UnsafePointer<T>?, y: UnsafeMutablePointer<T>) {
        let c = geo.inChannels, (h, wd, oh, ow) = (geo.height, geo.width, geo.outHeight, geo.outWidth)
        let weights = tapMajor(w, channels: c, taps: geo.kernelArea)
        weights.withUnsafeBufferPointer { wt in
            nonisolated(unsafe) let (xp, wp, bp, yp) = (x, wt.baseAddress!, bias, y)
            Parallel.forRanges(geo.batch * oh, costPerItem: ow * geo.kernelArea * c) { rows in
                for row in rows {
                    let (n, r) = (row / oh, row % oh)
                    let rowTaps = validTaps(r, size: h, kernel: geo.kernelH, padding: geo.padH)
                    for col in 0..<ow {
                        let out = yp + ((n * oh + r) * ow + col) * c
                        if let bp { out.update(from: bp, count: c) } else { out.update(repeating: 0, count: c) }
                        for kh in rowTaps {
                            let inRow = xp + (n * h + r + kh - geo.padH) * wd * c
                            for kw in validTaps(col, size: wd, kernel: geo.kernelW, padding: geo.padW) {
                                let src = inRow + (col + kw - geo.padW) * c, tap = wp + (kh * geo.kernelW + kw) * c
                                for i in 0..<c { out[i] += tap[i] * src[i] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The gradients asked for (`gx [N, H, W, C]`, `gw [C, 1, kH, kW]`, `gb [C]`) from `gy`
    /// shaped like the output; every buffer contiguous and fully written.
    static func depthwiseChannelsLastBackward<T: FloatElement>(_ geo: ConvGeometry, x: UnsafePointer<T>, w: UnsafePointer<T>,
                                                               gy: UnsafePointer<T>, gx: UnsafeMutablePointer<T>?,
                                                               gw: UnsafeMutablePointer<T>?, gb: UnsafeMutablePointer<T>?) {
        let c = geo.inChannels, taps = geo.kernelArea, (h, wd, oh, ow) = (geo.height, geo.width, geo.outHeight, geo.outWidth)
        if let gx {
            // Each input row gathers from the output rows that read it (stride 1: r = ih − kh + padH).
            let weights = tapMajor(w, channels: c, taps: taps)
            weights.withUnsafeBufferPointer { wt in
                nonisolated(unsafe) let (wp, gyp, gxp) = (wt.baseAddress!, gy, gx)
                Parallel.forRanges(geo.batch * h, costPerItem: wd * taps * c) { rows in
                    for row in rows {
                        let (n, ih) = (row / h, row % h)
                        for iw in 0..<wd {
                            let target = gxp + ((n * h + ih) * wd + iw) * c
                            target.update(repeating: 0, count: c)
                            for kh in 0..<geo.kernelH {
                                let r = ih - kh + geo.padH
                                guard r >= 0 && r < oh else { continue }
                                for kw in 0..<geo.kernelW {
                                    let col = iw - kw + geo.padW
                                    guard col >= 0 && col < ow else { continue }
                                    let upstream = gyp + ((n * oh + r) * ow + col) * c, tap = wp + (kh * geo.kernelW + kw) * c
                                    for i in 0..<c { target[i] += tap[i] * upstream[i] }
                                }
                            }
                        }
                    }
                }
            }
        }
        guard gw != nil || gb != nil else { return }
        // Per-thread sums over the samples, `[taps + 1, C]` (the last row is the bias), then added up.
        let threads = Swift.max(1, Swift.min(Tandem.numThreads, geo.batch))
        var partial = [T](repeating: 0, count: threads * (taps + 1) * c)
        partial.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let (xp, gyp, pp) = (x, gy, buffer.baseAddress!)
            Parallel.forRanges(threads, costPerItem: geo.batch * oh * ow * (taps + 1) * c / threads) { range in
                for t in range {
                    let sums = pp + t * (taps + 1) * c, biasSums = sums + taps * c
                    for n in (geo.batch * t / threads)..<(geo.batch * (t + 1) / threads) {
                        for r in 0..<oh {
                            let rowTaps = validTaps(r, size: h, kernel: geo.kernelH, padding: geo.padH)
                            for col in 0..<ow {
                                let upstream = gyp + ((n * oh + r) * ow + col) * c
                                for i in 0..<c { biasSums[i] += upstream[i] }
                                for kh in rowTaps {
                                    let inRow = xp + (n * h + r + kh - geo.padH) * wd * c
                                    for kw in validTaps(col, size: wd, kernel: geo.kernelW, padding: geo.padW) {
                                        let src = inRow + (col + kw - geo.padW) * c, sum = sums + (kh * geo.kernelW + kw) * c
                                        for i in 0..<c { sum[i] += upstream[i] * src[i] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for t in 1..<threads {
                for i in 0..<(taps + 1) * c { pp[i] += pp[t * (taps + 1) * c + i] }
            }
            if let gw { for ch in 0..<c { for tap in 0..<taps { gw[ch * taps + tap] = pp[tap * c + ch] } } }
            if let gb { gb.update(from: pp + taps * c, count: c) }
        }
    }
}

extension Kernels {
    /// The channels-last depthwise convolution of contiguous `input` `[N, H, W, C]` (float32 or
    /// float64) into a new `[N, Hout, Wout, C]`.
    static func depthwiseChannelsLastForward(_ geo: ConvGeometry, input x: Tensor, weight w: Tensor, bias b: Tensor?) -> Tensor {
        let out = Tensor(uninitializedShape: [geo.batch, geo.outHeight, geo.outWidth, geo.outChannels], dtype: x.dtype)
        func forward<T: FloatElement & SIMDScalar>(_: T.Type) {
            depthwiseChannelsLastForward(geo, x: x.elementPointer(T.self), w: w.elementPointer(T.self),
                                         bias: b.map { UnsafePointer($0.elementPointer(T.self)) }, y: out.elementPointer(T.self))
        }
        withExtendedLifetime((x, w, b)) { if x.dtype == .float64 { forward(Double.self) } else { forward(Float.self) } }
        return out
    }

    /// The gradients of input, weight and bias (those `state` asks for) for the output gradient `g`.
    static func depthwiseChannelsLastBackward(_ state: DepthwiseChannelsLastState, gradOut g: Tensor) -> [Tensor?] {
        let (geo, x, w) = (state.geo, state.input, state.weight)
        let gy = (g.dtype == x.dtype ? g : g.to(x.dtype)).contiguousStorage()
        let gx = state.needs[0] ? Tensor(uninitializedShape: x.shape, dtype: x.dtype) : nil
        let gw = state.needs[1] ? Tensor(uninitializedShape: w.shape, dtype: x.dtype) : nil
        let gb = state.hasBias && state.needs[2] ? Tensor(uninitializedShape: [geo.outChannels], dtype: x.dtype) : nil
        func backward<T: FloatElement & SIMDScalar>(_: T.Type) {
            depthwiseChannelsLastBackward(geo, x: x.elementPointer(T.self), w: w.elementPointer(T.self),
                                          gy: gy.elementPointer(T.self), gx: gx?.elementPointer(T.self),
                                          gw: gw?.elementPointer(T.self), gb: gb?.elementPointer(T.self))
        }
        withExtendedLifetime((gy, x, w)) { if x.dtype == .float64 { backward(Double.self) } else { backward(Float.self) } }
        return [gx, gw] + (state.hasBias ? [gb] : [])
    }
}
