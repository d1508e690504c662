/// The sizes of one 2-D pooling over `planes = N·C` planes of `height × width`.
struct PoolGeometry: Sendable {
    var planes: Int, height: Int, width: Int
    var kernelH: Int, kernelW: Int, strideH: Int, strideW: Int, padH: Int, padW: Int
    var outHeight: Int { (height + 2 * padH - kernelH) / strideH + 1 }
    var outWidth: Int { (width + 2 * padW - kernelW) / strideW + 1 }
}

/// Max, average and adaptive-average pooling kernels on contiguous NCHW planes.
/// Parallel over planes; each worker writes only its own planes.
extension Kernels {
    // MARK: - Max pooling

    /// Max pooling: the output and, per output element, the flat index (`ih·W + iw`) in its
    /// plane of the first maximum in row-major window order (NaN wins, as in PyTorch).
    static func maxPool2dForward(_ geo: PoolGeometry, input: Tensor) -> (out: Tensor, indices: Tensor) {
        let (oh, ow) = (geo.outHeight, geo.outWidth)
        let out = Tensor(uninitializedShape: [geo.planes, oh, ow], dtype: input.dtype)
        let idx = Tensor(uninitializedShape: [geo.planes, oh, ow], dtype: .int32)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (xp, yp, ip) = (input.elementPointer(T.self), out.elementPointer(T.self),
                                                    idx.elementPointer(Int32.self))
            let (h, w) = (geo.height, geo.width)
            let (kh, kw, sh, sw, ph, pw) = (geo.kernelH, geo.kernelW, geo.strideH, geo.strideW, geo.padH, geo.padW)
            let simple = kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0
            Parallel.forRanges(geo.planes, costPerItem: h * w + oh * ow * 4) { range in
                for plane in range {
                    let x = xp + plane * h * w, y = yp + plane * oh * ow, ix = ip + plane * oh * ow
                    if simple && T.self == Float.self && ow >= 8 {
                        // 2×2 windows, stride 2, no padding: eight windows at a time, branch-free.
                        let xf = UnsafeRawPointer(x).assumingMemoryBound(to: Float.self)
                        let yf = UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self)
                        for r in 0..<oh {
                            maxPool2x2Row(xf + 2 * r * w, width: w, base: 2 * r * w, outWidth: ow, y: yf + r * ow, indices: ix + r * ow)
                        }
                        continue
                    }
                    for r in 0..<oh {
                        let hs = Swift.max(r * sh - ph, 0), he = Swift.min(r * sh - ph + kh, h)
                        for c in 0..<ow {
                            let ws = Swift.max(c * sw - pw, 0), we = Swift.min(c * sw - pw + kw, w)
                            var m = -T.infinity, k = hs * w + ws
                            for i in hs..<he {
                                let row = x + i * w
                                for j in ws..<we {
                                    let v = row[j]
                                    if v > m || v.isNaN { m = v; k = i * w + j }
                                }
                            }
                            y[r * ow + c] = m
                            ix[r * ow + c] = Int32(truncatingIfNeeded: k)
                        }
                    }
                }
            }
        }
        if input.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return (out, idx)
    }

    /// One output row of a 2×2, stride-2, unpadded max pool (`outWidth ≥ 8`), eight windows
    /// per step with mask selects; the last step overlaps the previous one instead of
    /// running a scalar tail. Same tie and NaN rules as the general loop.
    @inline(__always)
    static func maxPool2x2Row(_ top: UnsafePointer<Float>, width w: Int, base: Int, outWidth ow: Int,
                              y: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>) {
        let lanes = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
        let down = Int32(truncatingIfNeeded: w)
        var c = 0
        while true {
            if c + 8 > ow { c = ow - 8 }
            let upper = UnsafeRawPointer(top + 2 * c).loadUnaligned(as: SIMD16<Float>.self)
            let lower = UnsafeRawPointer(top + w + 2 * c).loadUnaligned(as: SIMD16<Float>.self)
            let k0 = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: base + 2 * c)) &+ lanes
            var m = upper.evenHalf, k = k0
            let b = upper.oddHalf
            var mask = (b .> m) .| (b .!= b)
            m.replace(with: b, where: mask)
            k.replace(with: k0 &+ 1, where: mask)
            let cc = lower.evenHalf
            mask = (cc .> m) .| (cc .!= cc)
            m.replace(with: cc, where: mask)
            k.replace(with: k0 &+ down, where: mask)
            let d = lower.oddHalf
            mask = (d .> m) .| (d .!= d)
            m.replace(with: d, where: mask)
            k.replace(with: k0 &+ (down &+ 1), where: mask)
            UnsafeMutableRawPointer(y + c).storeBytes(of: m, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(indices + c).storeBytes(of: k, as: SIMD8<Int32>.self)
            if c + 8 >= ow { break }
            c += 8
        }
    }

    /// Routes each output gradient to its recorded arg-max.
    static func maxPool2dBackward(_ geo: PoolGeometry, gradOut: Tensor, indices: Tensor) -> Tensor {
        let (oh, ow, hw) = (geo.outHeight, geo.outWidth, geo.height * geo.width)
        let gx = Tensor(uninitializedShape: [geo.planes, geo.height, geo.width], dtype: gradOut.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (gp, dp, ip) = (gradOut.elementPointer(T.self), gx.elementPointer(T.self),
                                                    indices.elementPointer(Int32.self))
            let n = oh * ow
            Parallel.forRanges(geo.planes, costPerItem: hw + 2 * n) { range in
                for plane in range {
                    let d = dp + plane * hw, g = gp + plane * n, ix = ip + plane * n
                    d.update(repeating: 0, count: hw)
                    for i in 0..<n { d[Int(ix[i])] += g[i] }
                }
            }
        }
        if gradOut.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return gx
    }

    // MARK: - Average pooling

    /// Average pooling. The divisor is the window clipped to the padded input when
    /// `countIncludePad`, else the number of real input elements in the window.
    static func avgPool2dForward(_ geo: PoolGeometry, input: Tensor, countIncludePad: Bool) -> Tensor {
        let (oh, ow) = (geo.outHeight, geo.outWidth)
        let out = Tensor(uninitializedShape: [geo.planes, oh, ow], dtype: input.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (xp, yp) = (input.elementPointer(T.self), out.elementPointer(T.self))
            let (h, w) = (geo.height, geo.width)
            let (kh, kw, sh, sw, ph, pw) = (geo.kernelH, geo.kernelW, geo.strideH, geo.strideW, geo.padH, geo.padW)
            Parallel.forRanges(geo.planes, costPerItem: oh * ow * kh * kw) { range in
                for plane in range {
                    let x = xp + plane * h * w, y = yp + plane * oh * ow
                    for r in 0..<oh {
                        let h0 = r * sh - ph, h1 = Swift.min(h0 + kh, h + ph)
                        let hs = Swift.max(h0, 0), he = Swift.min(h1, h)
                        for c in 0..<ow {
                            let w0 = c * sw - pw, w1 = Swift.min(w0 + kw, w + pw)
                            let ws = Swift.max(w0, 0), we = Swift.min(w1, w)
                            var total: T = 0
                            for i in hs..<he {
                                let row = x + i * w
                                for j in ws..<we { total += row[j] }
                            }
                            let divisor = countIncludePad ? (h1 - h0) * (w1 - w0) : (he - hs) * (we - ws)
                            y[r * ow + c] = divisor > 0 ? total / T(Double(divisor)) : 0
                        }
                    }
                }
            }
        }
        if input.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return out
    }

    /// The input gradient of `avgPool2dForward`.
    static func avgPool2dBackward(_ geo: PoolGeometry, gradOut: Tensor, countIncludePad: Bool) -> Tensor {
        let (oh, ow) = (geo.outHeight, geo.outWidth)
        let gx = Tensor(uninitializedShape: [geo.planes, geo.height, geo.width], dtype: gradOut.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (gp, dp) = (gradOut.elementPointer(T.self), gx.elementPointer(T.self))
            let (h, w) = (geo.height, geo.width)
            let (kh, kw, sh, sw, ph, pw) = (geo.kernelH, geo.kernelW, geo.strideH, geo.strideW, geo.padH, geo.padW)
            Parallel.forRanges(geo.planes, costPerItem: h * w + oh * ow * kh * kw) { range in
                for plane in range {
                    let d = dp + plane * h * w, g = gp + plane * oh * ow
                    d.update(repeating: 0, count: h * w)
                    for r in 0..<oh {
                        let h0 = r * sh - ph, h1 = Swift.min(h0 + kh, h + ph)
                        let hs = Swift.max(h0, 0), he = Swift.min(h1, h)
                        for c in 0..<ow {
                            let w0 = c * sw - pw, w1 = Swift.min(w0 + kw, w + pw)
                            let ws = Swift.max(w0, 0), we = Swift.min(w1, w)
                            let divisor = countIncludePad ? (h1 - h0) * (w1 - w0) : (he - hs) * (we - ws)
                            if divisor <= 0 { continue }
                            let share = g[r * ow + c] / T(Double(divisor))
                            for i in hs..<he {
                                let row = d + i * w
                                for j in ws..<we { row[j] += share }
                            }
                        }
                    }
                }
            }
        }
        if gradOut.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return gx
    }

    // MARK: - Adaptive average pooling

    /// PyTorch's adaptive window `[floor(i·in/out), ceil((i+1)·in/out))`.
    @inline(__always)
    static func adaptiveWindow(_ i: Int, inSize: Int, outSize: Int) -> (Int, Int) {
        (i * inSize / outSize, ((i + 1) * inSize + outSize - 1) / outSize)
    }

    /// Adaptive average pooling of `[planes, H, W]` to `[planes, oh, ow]`.
    static func adaptiveAvgPool2dForward(input: Tensor, planes: Int, height h: Int, width w: Int, outHeight oh: Int,
                                         outWidth ow: Int) -> Tensor {
        let out = Tensor(uninitializedShape: [planes, oh, ow], dtype: input.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (xp, yp) = (input.elementPointer(T.self), out.elementPointer(T.self))
            Parallel.forRanges(planes, costPerItem: h * w + oh * ow) { range in
                for plane in range {
                    let x = xp + plane * h * w, y = yp + plane * oh * ow
                    for r in 0..<oh {
                        let (hs, he) = adaptiveWindow(r, inSize: h, outSize: oh)
                        for c in 0..<ow {
                            let (ws, we) = adaptiveWindow(c, inSize: w, outSize: ow)
                            var total: T = 0
                            for i in hs..<he {
                                let row = x + i * w
                                for j in ws..<we { total += row[j] }
                            }
                            y[r * ow + c] = total / T(Double((he - hs) * (we - ws)))
                        }
                    }
                }
            }
        }
        if input.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return out
    }

    /// The input gradient of `adaptiveAvgPool2dForward`.
    static func adaptiveAvgPool2dBackward(gradOut: Tensor, planes: Int, height h: Int, width w: Int, outHeight oh: Int,
                                          outWidth ow: Int) -> Tensor {
        let gx = Tensor(uninitializedShape: [planes, h, w], dtype: gradOut.dtype)
        func run<T: FloatElement>(_: T.Type) {
            nonisolated(unsafe) let (gp, dp) = (gradOut.elementPointer(T.self), gx.elementPointer(T.self))
            Parallel.forRanges(planes, costPerItem: 2 * h * w + oh * ow) { range in
                for plane in range {
                    let d = dp + plane * h * w, g = gp + plane * oh * ow
                    d.update(repeating: 0, count: h * w)
                    for r in 0..<oh {
                        let (hs, he) = adaptiveWindow(r, inSize: h, outSize: oh)
                        for c in 0..<ow {
                            let (ws, we) = adaptiveWindow(c, inSize: w, outSize: ow)
                            let share = g[r * ow + c] / T(Double((he - hs) * (we - ws)))
                            for i in hs..<he {
                                let row = d + i * w
                                for j in ws..<we { row[j] += share }
                            }
                        }
                    }
                }
            }
        }
        if gradOut.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return gx
    }
}
