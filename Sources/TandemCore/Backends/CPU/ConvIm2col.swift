/// The sizes of one 2-D convolution (conv1d runs as a conv2d with height 1).
struct ConvGeometry: Hashable, Sendable {
    var batch: Int, inChannels: Int, height: Int, width: Int
    var outChannels: Int, groups: Int, kernelH: Int, kernelW: Int
    var strideH: Int, strideW: Int, padH: Int, padW: Int, dilationH: Int, dilationW: Int

    var outHeight: Int { (height + 2 * padH - dilationH * (kernelH - 1) - 1) / strideH + 1 }
    var outWidth: Int { (width + 2 * padW - dilationW * (kernelW - 1) - 1) / strideW + 1 }
    var inPerGroup: Int { inChannels / groups }
    var outPerGroup: Int { outChannels / groups }
    var kernelArea: Int { kernelH * kernelW }
    var inputShape: [Int] { [batch, inChannels, height, width] }
    var weightShape: [Int] { [outChannels, inPerGroup, kernelH, kernelW] }
    var outputShape: [Int] { [batch, outChannels, outHeight, outWidth] }
}

/// Convolution through im2col + GEMM (OpenBLAS). The reference path: every dtype the
/// kernels compute in, any stride, padding, dilation and groups.
///
/// A chunk of `b` samples is unfolded into `col [Cin·kH·kW, b·Hout·Wout]` (row
/// `(c, i, j)`, column `(sample, oh, ow)`), so each group needs one large GEMM per chunk
/// instead of one small GEMM per sample.
extension Kernels {
    /// Elements of the column buffer a chunk may use (about 32 MB in float32).
    static let im2colBudget = 8 << 20

    /// Samples per chunk for `geo` under the budget.
    static func im2colChunk(_ geo: ConvGeometry) -> Int {
        let perSample = Swift.max(1, geo.inChannels * geo.kernelArea * geo.outHeight * geo.outWidth
                                      + geo.outChannels * geo.outHeight * geo.outWidth)
        return Swift.max(1, Swift.min(geo.batch, im2colBudget / perSample))
    }

    /// Forward without oneDNN: `out = conv(input, weight) + bias`, all contiguous NCHW / OIHW
    /// buffers; depthwise geometries run `depthwiseConvForward`, the others im2col + GEMM.
    static func convForwardPortable(_ geo: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let out = Tensor(uninitializedShape: geo.outputShape, dtype: input.dtype)
        func run<T: FloatElement>(_: T.Type) {
            let (x, w, y) = (input.elementPointer(T.self), weight.elementPointer(T.self), out.elementPointer(T.self))
            let b = bias.map { UnsafePointer($0.elementPointer(T.self)) }
            if geo.isDepthwise {
                depthwiseConvForward(geo, x: x, w: w, bias: b, y: y)
            } else {
                convForwardIm2col(geo, x: x, w: w, bias: b, y: y)
            }
        }
        if input.dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return out
    }

    /// Backward without oneDNN: the gradients asked for, from `gradOut` (contiguous, shaped like
    /// the output); depthwise geometries run `depthwiseConvBackward`, the others im2col + GEMM.
    static func convBackwardPortable(_ geo: ConvGeometry, input: Tensor, weight: Tensor, gradOut: Tensor,
                                     needInput: Bool, needWeight: Bool, needBias: Bool)
        -> (input: Tensor?, weight: Tensor?, bias: Tensor?) {
        let dtype = input.dtype
        let gx = needInput ? Tensor(uninitializedShape: geo.inputShape, dtype: dtype) : nil
        let gw = needWeight ? Tensor(uninitializedShape: geo.weightShape, dtype: dtype) : nil
        let gb = needBias ? Tensor(uninitializedShape: [geo.outChannels], dtype: dtype) : nil
        func run<T: FloatElement>(_: T.Type) {
            let (x, w, gy) = (input.elementPointer(T.self), weight.elementPointer(T.self), gradOut.elementPointer(T.self))
            let (gxp, gwp, gbp) = (gx?.elementPointer(T.self), gw?.elementPointer(T.self), gb?.elementPointer(T.self))
            if geo.isDepthwise {
                depthwiseConvBackward(geo, x: x, w: w, gy: gy, gx: gxp, gw: gwp, gb: gbp)
            } else {
                convBackwardIm2col(geo, x: x, w: w, gy: gy, gx: gxp, gw: gwp, gb: gbp)
            }
        }
        if dtype == .float64 { run(Double.self) } else { run(Float.self) }
        return (gx, gw, gb)
    }

    // MARK: - Typed drivers

    static func convForwardIm2col<T: FloatElement>(_ geo: ConvGeometry, x: UnsafePointer<T>, w: UnsafePointer<T>,
                                                   bias: UnsafePointer<T>?, y: UnsafeMutablePointer<T>) {
        let hw = geo.outHeight * geo.outWidth
        let cout = geo.outChannels, coutG = geo.outPerGroup
        let rowsG = geo.inPerGroup * geo.kernelArea
        if geo.batch == 0 || cout == 0 || hw == 0 { return }
        if rowsG == 0 {
            nonisolated(unsafe) let yp = y
            Parallel.forRanges(geo.batch * cout, costPerItem: hw) { range in
                for item in range { (yp + item * hw).update(repeating: bias?[item % cout] ?? 0, count: hw) }
            }
            return
        }
        let chunk = im2colChunk(geo)
        let col = UnsafeMutablePointer<T>.allocate(capacity: geo.inChannels * geo.kernelArea * chunk * hw)
        let tmp = UnsafeMutablePointer<T>.allocate(capacity: cout * chunk * hw)
        defer { col.deallocate(); tmp.deallocate() }
        var start = 0
        while start < geo.batch {
            let b = Swift.min(chunk, geo.batch - start)
            let ncols = b * hw
            im2col(geo, x: x, firstSample: start, samples: b, col: col)
            for g in 0..<geo.groups {
                gemm(T.self, transA: false, transB: false, m: coutG, n: ncols, k: rowsG,
                     a: w + g * coutG * rowsG, lda: rowsG, b: col + g * rowsG * ncols, ldb: ncols,
                     c: tmp + g * coutG * ncols, ldc: ncols)
            }
            // tmp [Cout, b, HW] → y [b, Cout, HW] (+ bias)
            nonisolated(unsafe) let (tp, yp) = (UnsafePointer(tmp), y + start * cout * hw)
            Parallel.forRanges(b * cout, costPerItem: hw) { range in
                for item in range {
                    let s = item / cout, c = item % cout
                    let src = tp + c * ncols + s * hw, dst = yp + item * hw
                    let add = bias?[c] ?? 0
                    for i in 0..<hw { dst[i] = src[i] + add }
                }
            }
            start += b
        }
    }

    static func convBackwardIm2col<T: FloatElement>(_ geo: ConvGeometry, x: UnsafePointer<T>, w: UnsafePointer<T>,
                                                    gy: UnsafePointer<T>, gx: UnsafeMutablePointer<T>?,
                                                    gw: UnsafeMutablePointer<T>?, gb: UnsafeMutablePointer<T>?) {
        let hw = geo.outHeight * geo.outWidth
        let cout = geo.outChannels, coutG = geo.outPerGroup
        let rowsG = geo.inPerGroup * geo.kernelArea
        if let gb {
            nonisolated(unsafe) let gbp = gb
            let (batch, count) = (geo.batch, cout)
            Parallel.forRanges(cout, costPerItem: geo.batch * hw) { range in
                for c in range {
                    var total: T = 0
                    for s in 0..<batch {
                        let p = gy + (s * count + c) * hw
                        for i in 0..<hw { total += p[i] }
                    }
                    gbp[c] = total
                }
            }
        }
        if let gw { gw.update(repeating: 0, count: cout * rowsG) }
        if let gx { gx.update(repeating: 0, count: geo.batch * geo.inChannels * geo.height * geo.width) }
        if gx == nil && gw == nil { return }
        if geo.batch == 0 || cout == 0 || hw == 0 || rowsG == 0 { return }
        let chunk = im2colChunk(geo)
        let col = UnsafeMutablePointer<T>.allocate(capacity: geo.inChannels * geo.kernelArea * chunk * hw)
        let tmp = UnsafeMutablePointer<T>.allocate(capacity: cout * chunk * hw)
        defer { col.deallocate(); tmp.deallocate() }
        var start = 0
        while start < geo.batch {
            let b = Swift.min(chunk, geo.batch - start)
            let ncols = b * hw
            // gy [b, Cout, HW] → tmp [Cout, b, HW]
            nonisolated(unsafe) let (tp, yp) = (tmp, gy + start * cout * hw)
            Parallel.forRanges(b * cout, costPerItem: hw) { range in
                for item in range {
                    let s = item / cout, c = item % cout
                    (tp + c * ncols + s * hw).update(from: yp + item * hw, count: hw)
                }
            }
            if let gw {
                im2col(geo, x: x, firstSample: start, samples: b, col: col)
                for g in 0..<geo.groups {
                    gemm(T.self, transA: false, transB: true, m: coutG, n: rowsG, k: ncols,
                         a: tmp + g * coutG * ncols, lda: ncols, b: col + g * rowsG * ncols, ldb: ncols,
                         c: gw + g * coutG * rowsG, ldc: rowsG, beta: 1)
                }
            }
            if let gx {
                for g in 0..<geo.groups {
                    gemm(T.self, transA: true, transB: false, m: rowsG, n: ncols, k: coutG,
                         a: w + g * coutG * rowsG, lda: rowsG, b: tmp + g * coutG * ncols, ldb: ncols,
                         c: col + g * rowsG * ncols, ldc: ncols)
                }
                col2im(geo, col: col, firstSample: start, samples: b, gx: gx)
            }
            start += b
        }
    }

    // MARK: - Unfolding

    /// The output columns `[lo, hi)` whose input column `ow·stride + offset` lies in `[0, size)`.
    @inline(__always)
    static func validRange(offset: Int, stride: Int, size: Int, outSize: Int) -> (Int, Int) {
        let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
        let last = size - 1 - offset
        let hi = last < 0 ? 0 : Swift.min(outSize, last / stride + 1)
        return (Swift.min(lo, outSize), Swift.max(hi, Swift.min(lo, outSize)))
    }

    /// Fills `col [Cin·kH·kW, samples·HW]` from samples `firstSample..<firstSample+samples`.
    static func im2col<T: FloatElement>(_ geo: ConvGeometry, x: UnsafePointer<T>, firstSample: Int, samples: Int,
                                        col: UnsafeMutablePointer<T>) {
        let (cin, h, wd) = (geo.inChannels, geo.height, geo.width)
        let (kh, kw, oh, ow) = (geo.kernelH, geo.kernelW, geo.outHeight, geo.outWidth)
        let (sh, sw, ph, pw, dh, dw) = (geo.strideH, geo.strideW, geo.padH, geo.padW, geo.dilationH, geo.dilationW)
        let hw = oh * ow, ncols = samples * hw
        nonisolated(unsafe) let (xp, cp) = (x + firstSample * cin * h * wd, col)
        Parallel.forRanges(samples * cin, costPerItem: kh * kw * hw) { range in
            for item in range {
                let s = item / cin, c = item % cin
                let plane = xp + item * h * wd
                for ki in 0..<kh {
                    for kj in 0..<kw {
                        let row = (c * kh + ki) * kw + kj
                        let dst = cp + row * ncols + s * hw
                        let off = kj * dw - pw
                        let (lo, hi) = validRange(offset: off, stride: sw, size: wd, outSize: ow)
                        for r in 0..<oh {
                            let d = dst + r * ow
                            let ih = r * sh - ph + ki * dh
                            if ih < 0 || ih >= h {
                                d.update(repeating: 0, count: ow)
                                continue
                            }
                            if lo > 0 { d.update(repeating: 0, count: lo) }
                            let srow = plane + ih * wd + off
                            if sw == 1 {
                                if hi > lo { (d + lo).update(from: srow + lo, count: hi - lo) }
                            } else {
                                var j = lo
                                while j < hi { d[j] = srow[j * sw]; j += 1 }
                            }
                            if hi < ow { (d + hi).update(repeating: 0, count: ow - hi) }
                        }
                    }
                }
            }
        }
    }

    /// Adds `col [Cin·kH·kW, samples·HW]` back into the input-shaped `gx` (zeroed by the caller).
    static func col2im<T: FloatElement>(_ geo: ConvGeometry, col: UnsafePointer<T>, firstSample: Int, samples: Int,
                                        gx: UnsafeMutablePointer<T>) {
        let (cin, h, wd) = (geo.inChannels, geo.height, geo.width)
        let (kh, kw, oh, ow) = (geo.kernelH, geo.kernelW, geo.outHeight, geo.outWidth)
        let (sh, sw, ph, pw, dh, dw) = (geo.strideH, geo.strideW, geo.padH, geo.padW, geo.dilationH, geo.dilationW)
        let hw = oh * ow, ncols = samples * hw
        nonisolated(unsafe) let (gp, cp) = (gx + firstSample * cin * h * wd, col)
        Parallel.forRanges(samples * cin, costPerItem: kh * kw * hw) { range in
            for item in range {
                let s = item / cin, c = item % cin
                let plane = gp + item * h * wd
                for ki in 0..<kh {
                    for kj in 0..<kw {
                        let row = (c * kh + ki) * kw + kj
                        let src = cp + row * ncols + s * hw
                        let off = kj * dw - pw
                        let (lo, hi) = validRange(offset: off, stride: sw, size: wd, outSize: ow)
                        if hi <= lo { continue }
                        for r in 0..<oh {
                            let ih = r * sh - ph + ki * dh
                            if ih < 0 || ih >= h { continue }
                            let sp = src + r * ow
                            let drow = plane + ih * wd + off
                            if sw == 1 {
                                for j in lo..<hi { drow[j] += sp[j] }
                            } else {
                                for j in lo..<hi { drow[j * sw] += sp[j] }
                            }
                        }
                    }
                }
            }
        }
    }
}
