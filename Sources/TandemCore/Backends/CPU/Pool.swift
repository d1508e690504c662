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
            // Output columns whose windows lie inside the width run vectorised (float32).
            let interiorLo = Swift.min((pw + sw - 1) / sw, ow)
            let interiorHi = w + pw - kw < 0 ? interiorLo : Swift.max(interiorLo, Swift.min(ow, (w + pw - kw) / sw + 1))
            let vector = T.self == Float.self
            Parallel.forRanges(geo.planes, costPerItem: h * w + oh * ow * kh * kw) { range in
                for plane in range {
                    let x = xp + plane * h * w, y = yp + plane * oh * ow, ix = ip + plane * oh * ow
                    for r in 0..<oh {
                        let hs = Swift.max(r * sh - ph, 0), he = Swift.min(r * sh - ph + kh, h)
                        var c = 0
                        while c < ow {
                            if vector && c == interiorLo && interiorHi - interiorLo >= 4 {
                                let xf = UnsafeRawPointer(x).assumingMemoryBound(to: Float.self)
                                let yf = UnsafeMutableRawPointer(y + r * ow).assumingMemoryBound(to: Float.self)
                                if interiorHi - interiorLo >= 8 {
                                    maxPoolInterior(MaxPoolLanes8.self, xf, width: w, rows: hs..<he, columns: interiorLo..<interiorHi,
                                                    stride: sw, pad: pw, kernelW: kw, y: yf, indices: ix + r * ow)
                                } else {
                                    maxPoolInterior(MaxPoolLanes4.self, xf, width: w, rows: hs..<he, columns: interiorLo..<interiorHi,
                                                    stride: sw, pad: pw, kernelW: kw, y: yf, indices: ix + r * ow)
                                }
                                c = interiorHi
                                continue
                            }
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
                            c += 1
                        }
                    }
                }
            }
        }
        if input.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return (out, idx)
    }

    /// Max pooling of one output row over the columns `columns` (at least `L.count` of them),
    /// whose windows lie inside the width: `L.count` windows per step with mask selects, and
    /// a last step that overlaps the previous one instead of a scalar tail. The taps are
    /// visited in row-major order with the scalar loop's tie and NaN rules.
    @inline(__always)
    static func maxPoolInterior<L: MaxPoolLanes>(_: L.Type, _ x: UnsafePointer<Float>, width w: Int, rows: Range<Int>,
                                                 columns: Range<Int>, stride sw: Int, pad pw: Int, kernelW kw: Int,
                                                 y: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>) {
        let offsets = L.indices(0, step: Int32(truncatingIfNeeded: sw))
        var c = columns.lowerBound
        while true {
            if c + L.count > columns.upperBound { c = columns.upperBound - L.count }
            let start = c * sw - pw
            var m = L.Values(repeating: -.infinity)
            var k = L.offset(offsets, by: Int32(truncatingIfNeeded: rows.lowerBound * w + start))
            for i in rows {
                let row = x + i * w + start
                let base = Int32(truncatingIfNeeded: i * w + start)
                if sw == 1 {
                    for j in 0..<kw {
                        let v = UnsafeRawPointer(row + j).loadUnaligned(as: L.Values.self)
                        L.update(&m, &k, with: v, at: L.offset(offsets, by: base &+ Int32(truncatingIfNeeded: j)))
                    }
                    continue
                }
                var j = 0
                if sw == 2 {
                    // Taps j and j+1 from one load of 2·count floats (all inside the windows).
                    while j + 1 < kw {
                        let (even, odd) = L.pairs(row + j)
                        L.update(&m, &k, with: even, at: L.offset(offsets, by: base &+ Int32(truncatingIfNeeded: j)))
                        L.update(&m, &k, with: odd, at: L.offset(offsets, by: base &+ Int32(truncatingIfNeeded: j + 1)))
                        j += 2
                    }
                    if j < kw && j >= 1 {
                        // The last tap of an odd-width kernel: odd lanes of a load one float earlier.
                        let v = L.pairs(row + j - 1).1
                        L.update(&m, &k, with: v, at: L.offset(offsets, by: base &+ Int32(truncatingIfNeeded: j)))
                        j += 1
                    }
                }
                while j < kw {
                    var g = L.Values(repeating: 0)
                    for l in 0..<L.count { g[l] = row[j + l * sw] }
                    L.update(&m, &k, with: g, at: L.offset(offsets, by: base &+ Int32(truncatingIfNeeded: j)))
                    j += 1
                }
            }
            UnsafeMutableRawPointer(y + c).storeBytes(of: m, as: L.Values.self)
            UnsafeMutableRawPointer(indices + c).storeBytes(of: k, as: L.Indices.self)
            if c + L.count >= columns.upperBound { break }
            c += L.count
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

/// A SIMD width for `Kernels.maxPoolInterior`. The vector operations live in the concrete
/// types: in generic code the standard library's SIMD operators fall back to lane-by-lane
/// loops, while on concrete types they are single instructions.
protocol MaxPoolLanes {
    associatedtype Values: SIMD where Values.Scalar == Float
    associatedtype Indices: SIMD where Indices.Scalar == Int32
    static var count: Int { get }
    /// `base + lane·step` per lane.
    static func indices(_ base: Int32, step: Int32) -> Indices
    /// `offsets + base` per lane.
    static func offset(_ offsets: Indices, by base: Int32) -> Indices
    /// Lanes `p[0], p[2], ...` and `p[1], p[3], ...` from one load of `2·count` floats.
    static func pairs(_ p: UnsafePointer<Float>) -> (Values, Values)
    /// Takes `v` (and its index) where `v > m` or `v` is NaN.
    static func update(_ m: inout Values, _ k: inout Indices, with v: Values, at: Indices)
}

enum MaxPoolLanes8: MaxPoolLanes {
    static var count: Int { 8 }
    @inline(__always) static func indices(_ base: Int32, step: Int32) -> SIMD8<Int32> {
        SIMD8(repeating: base) &+ SIMD8(0, 1, 2, 3, 4, 5, 6, 7) &* step
    }
    @inline(__always) static func offset(_ offsets: SIMD8<Int32>, by base: Int32) -> SIMD8<Int32> {
        offsets &+ SIMD8(repeating: base)
    }
    @inline(__always) static func pairs(_ p: UnsafePointer<Float>) -> (SIMD8<Float>, SIMD8<Float>) {
        let v = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
        return (v.evenHalf, v.oddHalf)
    }
    @inline(__always) static func update(_ m: inout SIMD8<Float>, _ k: inout SIMD8<Int32>, with v: SIMD8<Float>,
                                         at: SIMD8<Int32>) {
        let better = (v .> m) .| (v .!= v)
        m.replace(with: v, where: better)
        k.replace(with: at, where: better)
    }
}

enum MaxPoolLanes4: MaxPoolLanes {
    static var count: Int { 4 }
    @inline(__always) static func indices(_ base: Int32, step: Int32) -> SIMD4<Int32> {
        SIMD4(repeating: base) &+ SIMD4(0, 1, 2, 3) &* step
    }
    @inline(__always) static func offset(_ offsets: SIMD4<Int32>, by base: Int32) -> SIMD4<Int32> {
        offsets &+ SIMD4(repeating: base)
    }
    @inline(__always) static func pairs(_ p: UnsafePointer<Float>) -> (SIMD4<Float>, SIMD4<Float>) {
        let v = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
        return (v.evenHalf, v.oddHalf)
    }
    @inline(__always) static func update(_ m: inout SIMD4<Float>, _ k: inout SIMD4<Int32>, with v: SIMD4<Float>,
                                         at: SIMD4<Int32>) {
        let better = (v .> m) .| (v .!= v)
        m.replace(with: v, where: better)
        k.replace(with: at, where: better)
    }
}
