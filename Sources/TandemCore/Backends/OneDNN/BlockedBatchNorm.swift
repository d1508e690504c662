import CDNNL

/// Batch norm followed by ReLU on the layouts oneDNN's convolution writes (`nChw8c`,
/// `nChw16c`, or plain `nchw` for small shapes), for the fused convolution block
/// (`DNNLConvBlockPlan`).
///
/// oneDNN's own batch norm sums each channel in float32 with an accuracy that depends on the
/// ISA it picks: its AVX2 kernel's batch means fail the ConvNet's golden test, where the
/// layer-by-layer path is within float32 rounding (docs/BENCHMARKS.md, issue 17). These kernels
/// compute the statistics and the backward reductions in float32 lanes flushed to Double every
/// 32 vectors, with the statistics in Double, so the fused block is as accurate as the layers
/// on every CPU.
///
/// A buffer is `[N][Cp/B][S][B]` floats: `S = H·W` positions of `B` channels each, `B` a
/// multiple of 8 or 1 (NCHW), and `Cp ≥ C` channels padded with zeros to a multiple of `B`. A
/// *run* is one `(n, channel block)` pair: `S·B` contiguous floats. The kernels work on eight
/// float32 lanes at a time: eight channels of one position in a blocked layout, eight
/// positions of one channel in NCHW (`LaneWalk`).

/// The shape of a channel-blocked float32 buffer (see the file comment).
struct ChannelBlockedLayout: Hashable, Sendable {
    let batch: Int, channels: Int, paddedChannels: Int, spatial: Int, block: Int

    var channelBlocks: Int { paddedChannels / block }
    /// Number of runs, `N · Cp/B`.
    var runs: Int { batch * channelBlocks }
    /// Floats in one run, `S · B`.
    var runLength: Int { spatial * block }
    /// Values each channel's statistics are taken over, `N · S`.
    var count: Int { batch * spatial }
}

extension DNNL {
    /// `md` as a channel-blocked layout: a dense float32 `[N, C, H, W]` tensor, plain NCHW or
    /// with one inner block of `B` channels, `B` a multiple of 8 (`nChw8c`, `nChw16c`); nil for
    /// any other.
    static func channelBlockedLayout(_ md: dnnl_memory_desc_t) -> ChannelBlockedLayout? {
        guard md.ndims == 4, md.data_type == dnnl_f32, md.format_kind == dnnl_blocked, md.offset0 == 0,
              md.extra.flags == 0 else { return nil }
        let dims = withUnsafeBytes(of: md.dims) { Array($0.bindMemory(to: Int64.self).prefix(4)).map(Int.init) }
        let padded = withUnsafeBytes(of: md.padded_dims) { Array($0.bindMemory(to: Int64.self).prefix(4)).map(Int.init) }
        let offsets = withUnsafeBytes(of: md.padded_offsets) { Array($0.bindMemory(to: Int64.self).prefix(4)) }
        let blocking = md.format_desc.blocking
        let strides = withUnsafeBytes(of: blocking.strides) { Array($0.bindMemory(to: Int64.self).prefix(4)).map(Int.init) }
        let plain = blocking.inner_nblks == 0
        guard plain || (blocking.inner_nblks == 1 && blocking.inner_idxs.0 == 1), offsets.allSatisfy({ $0 == 0 }) else { return nil }
        let block = plain ? 1 : Int(blocking.inner_blks.0)
        let (n, cp, h, w) = (padded[0], padded[1], padded[2], padded[3])
        guard block == 1 || block % 8 == 0, cp % block == 0, [n, h, w] == [dims[0], dims[2], dims[3]],
              strides == [cp * h * w, h * w * block, w * block, block] else { return nil }
        return ChannelBlockedLayout(batch: n, channels: dims[1], paddedChannels: cp, spatial: h * w, block: block)
    }
}

/// A batch norm's statistics and its per-lane affine map `y = max((x − center)·scale + shift,
/// 0)`, where `center` is the mean rounded to float32 and `shift` absorbs the rounding. Lanes
/// of padded channels map to 0.
struct BlockedNormMap: Sendable {
    /// Per channel `[C]`: mean, biased variance, 1/sqrt(variance + eps).
    var mean: [Double], variance: [Double], invstd: [Double]
    /// `[3, Cp]`: center, scale and shift of each padded channel.
    var lanes: [Float]
    let paddedChannels: Int

    init(mean: [Double], variance: [Double], invstd: [Double], paddedChannels: Int) {
        self.mean = mean; self.variance = variance; self.invstd = invstd; self.paddedChannels = paddedChannels
        lanes = [Float](repeating: 0, count: 3 * paddedChannels)
    }

    /// Channel `ch`'s float32 center.
    func center(_ ch: Int) -> Float { lanes[ch] }
    /// Sets channel `ch`'s map.
    mutating func set(_ ch: Int, center: Float, scale: Float, shift: Float) {
        lanes[ch] = center; lanes[paddedChannels + ch] = scale; lanes[2 * paddedChannels + ch] = shift
    }
}

/// How the kernels walk one lane group of a run (eight lanes): `count` full vectors `step`
/// floats apart, then, in NCHW only, a tail of `tail < 8` floats.
private struct LaneWalk {
    let count: Int, step: Int, tail: Int
    /// Whether the eight lanes are eight channels (blocked layouts) or eight positions (NCHW).
    let lanesAreChannels: Bool

    init(_ layout: ChannelBlockedLayout) {
        lanesAreChannels = layout.block >= 8
        count = lanesAreChannels ? layout.spatial : layout.spatial / 8
        step = lanesAreChannels ? layout.block : 8
        tail = lanesAreChannels ? 0 : layout.spatial % 8
    }

    /// The per-channel values `p[lane..<lane+8]` (blocked) or `p[lane]` in every lane (NCHW).
    @inline(__always) func parameter(_ p: UnsafePointer<Float>, _ lane: Int) -> SIMD8<Float> {
        lanesAreChannels ? UnsafeRawPointer(p + lane).loadUnaligned(as: SIMD8<Float>.self) : SIMD8(repeating: p[lane])
    }

    /// The lanes of the tail that hold data.
    var tailMask: SIMDMask<SIMD8<Int32>> { SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) .< Int32(tail) }

    /// The tail's floats at `p`, zero in the other lanes.
    @inline(__always) func loadTail(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        var v = SIMD8<Float>(repeating: 0)
        for i in 0..<tail { v[i] = p[i] }
        return v
    }

    /// Stores the tail's lanes of `v` at `p`.
    @inline(__always) func storeTail(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        for i in 0..<tail { p[i] = v[i] }
    }
}

extension Kernels {
    /// Flushes float32 lane sums into Double every this many vectors, so that a lane's float32
    /// sum is off by at most γ₃₂ of its terms' magnitudes (ConvBlockAccuracyTests).
    private static var flushEvery: Int { 32 }

    /// The map of a training batch norm over `x`: its batch mean and biased variance per
    /// channel, with `weight` and `bias` `[C]`. One pass sums x − K and (x − K)² with a shift K
    /// per channel, the float32 mean of the first image's values: K is usually within a few
    /// standard deviations of the mean, so Σ(x − K)² − (Σ(x − K))²/M loses nothing to
    /// cancellation; when it is not, a second pass takes the squares around the mean.
    static func blockedBatchNormStatistics(_ x: UnsafePointer<Float>, _ layout: ChannelBlockedLayout, eps: Double,
                                           weight: UnsafePointer<Float>, bias: UnsafePointer<Float>) -> BlockedNormMap {
        let c = layout.channels, cp = layout.paddedChannels, m = Double(layout.count), walk = LaneWalk(layout)
        var firstSums = [Double](repeating: 0, count: cp)
        firstSums.withUnsafeMutableBufferPointer { out in
            for run in 0..<layout.channelBlocks {
                for group in stride(from: 0, to: layout.block, by: 8) {
                    let lane = run * layout.block + group
                    laneGroupSums(x + run * layout.runLength + group, walk, out.baseAddress! + lane) { $0 }
                }
            }
        }
        let shifts = firstSums.map { Float($0 / Double(layout.spatial)) }
        let sums = shifts.withUnsafeBufferPointer { shiftBuffer in
            nonisolated(unsafe) let (xp, kp) = (x, shiftBuffer.baseAddress!)
            return blockedChannelSums(layout, sets: 2, paired: { offset, lane, sum, squares in
                pairedShiftedSums(xp + offset, layout.spatial, load(kp + lane), load(kp + lane + 8), sum, squares)
            }) { offset, lane, sum, squares in
                laneGroupShiftedSums(xp + offset, walk, walk.parameter(kp, lane), sum, squares)
            }
        }
        let means = (0..<c).map { Double(shifts[$0]) + sums[$0] / m }
        var variances = (0..<c).map { Swift.max(sums[cp + $0] - sums[$0] * sums[$0] / m, 0) / m }
        // A first image far from the batch's mean (by more than two standard deviations) would
        // cost float32 digits in Σ(x − S)²: then take the squares around the mean, a second pass.
        if (0..<c).contains(where: { ch in
            let d = means[ch] - Double(shifts[ch])
            return d * d > 4 * variances[ch]
        }) {
            let centers = (0..<cp).map { $0 < c ? Float(means[$0]) : 0 }
            let squares = centers.withUnsafeBufferPointer { centerBuffer in
                nonisolated(unsafe) let (xp, cb) = (x, centerBuffer.baseAddress!)
                return blockedChannelSums(layout) { offset, lane, out, _ in
                    let center = walk.parameter(cb, lane)
                    laneGroupSums(xp + offset, walk, out) { let d = $0 - center; return d * d }
                }
            }
            for ch in 0..<c {
                let error = means[ch] - Double(centers[ch])  // Σ(x − μ)² = Σ(x − μ')² − M(μ − μ')²
                variances[ch] = Swift.max(squares[ch] - m * error * error, 0) / m
            }
        }
        var map = BlockedNormMap(mean: [], variance: [], invstd: [], paddedChannels: cp)
        for ch in 0..<c {
            let mean = means[ch], variance = variances[ch]
            let invstd = 1 / (variance + eps).squareRoot()
            // y = (x − μ')·a + (b − (μ − μ')·a), with μ' = center, the mean rounded to float32.
            let center = Float(mean), shiftError = mean - Double(center)
            let a = Double(weight[ch]) * invstd
            map.mean.append(mean)
            map.variance.append(variance)
            map.invstd.append(invstd)
            map.set(ch, center: center, scale: Float(a), shift: Float(Double(bias[ch]) - shiftError * a))
        }
        return map
    }

    /// The map of an evaluation batch norm: the running `mean` and `variance` `[C]`.
    static func blockedBatchNormMap(_ layout: ChannelBlockedLayout, eps: Double, mean: UnsafePointer<Float>,
                                    variance: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                    bias: UnsafePointer<Float>) -> BlockedNormMap {
        let c = layout.channels
        let variances = (0..<c).map { Double(variance[$0]) }
        var map = BlockedNormMap(mean: (0..<c).map { Double(mean[$0]) }, variance: variances,
                                 invstd: variances.map { 1 / ($0 + eps).squareRoot() }, paddedChannels: layout.paddedChannels)
        for ch in 0..<c {
            map.set(ch, center: mean[ch], scale: Float(Double(weight[ch]) * map.invstd[ch]), shift: bias[ch])
        }
        return map
    }

    /// `y = max((x − center)·scale + shift, 0)` per channel over the whole buffer.
    static func blockedNormReLU(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ layout: ChannelBlockedLayout,
                                _ map: BlockedNormMap) {
        let cp = layout.paddedChannels, walk = LaneWalk(layout)
        map.lanes.withUnsafeBufferPointer { lanes in
            nonisolated(unsafe) let (xp, yp, lp) = (x, y, lanes.baseAddress!)
            if layout.block == 16 {
                // Both halves of a 64-byte position in one sweep: each cache line is read once.
                forEachRun(layout, cost: 2) { offset, l in
                    let c0 = load(lp + l), a0 = load(lp + cp + l), e0 = load(lp + 2 * cp + l)
                    let c1 = load(lp + l + 8), a1 = load(lp + cp + l + 8), e1 = load(lp + 2 * cp + l + 8)
                    var o = offset
                    for _ in 0..<layout.spatial {
                        store(normReLU(load(xp + o), c0, a0, e0), yp + o)
                        store(normReLU(load(xp + o + 8), c1, a1, e1), yp + o + 8)
                        o += 16
                    }
                }
                return
            }
            forEachLaneGroup(layout, cost: 2) { offset, l in
                let center = walk.parameter(lp, l), a = walk.parameter(lp + cp, l), e = walk.parameter(lp + 2 * cp, l)
                var o = offset
                for _ in 0..<walk.count {
                    store(normReLU(load(xp + o), center, a, e), yp + o)
                    o += walk.step
                }
                if walk.tail > 0 { walk.storeTail(normReLU(walk.loadTail(xp + o), center, a, e), yp + o) }
            }
        }
    }

    /// The batch norm's backward pass through the ReLU, in training mode: from `gradOut` (the
    /// gradient of `y`) and the forward input `x`, writes the input gradient `gradIn` and
    /// returns the gradients of the batch norm's `weight` and bias `[C]`.
    /// `gradIn = k1·g' + (x − center)·k2 + k3`, where `g' = gradOut` where `y > 0`, else 0.
    static func blockedBatchNormReLUBackward(_ x: UnsafePointer<Float>, gradOut: UnsafePointer<Float>,
                                             gradIn: UnsafeMutablePointer<Float>, _ layout: ChannelBlockedLayout,
                                             _ map: BlockedNormMap, weight: UnsafePointer<Float>)
        -> (weight: [Float], bias: [Float]) {
        let c = layout.channels, cp = layout.paddedChannels, m = Double(layout.count), walk = LaneWalk(layout)
        let sums = map.lanes.withUnsafeBufferPointer { lanes in
            nonisolated(unsafe) let (xp, gp, lp) = (x, gradOut, lanes.baseAddress!)
            return blockedChannelSums(layout, sets: 2, paired: { offset, l, sumG, sumGX in
                pairedGradSums(xp + offset, gp + offset, layout.spatial,
                               (load(lp + l), load(lp + cp + l), load(lp + 2 * cp + l)),
                               (load(lp + l + 8), load(lp + cp + l + 8), load(lp + 2 * cp + l + 8)), sumG, sumGX)
            }) { offset, l, sumG, sumGX in
                laneGroupGradSums(xp + offset, gp + offset, walk, walk.parameter(lp, l), walk.parameter(lp + cp, l),
                                  walk.parameter(lp + 2 * cp, l), sumG, sumGX)
            }
        }
        // [3, Cp]: k1, k2, k3.
        var coefficients = [Float](repeating: 0, count: 3 * cp)
        var gradWeight = [Float](repeating: 0, count: c), gradBias = gradWeight
        for ch in 0..<c {
            let sumG = sums[ch], shiftError = map.mean[ch] - Double(map.center(ch))
            let sumGX = sums[cp + ch] - shiftError * sumG  // Σ g'·(x − μ)
            let invstd = map.invstd[ch], scale = Double(weight[ch]) * invstd
            let slope = -scale * invstd * invstd * sumGX / m
            coefficients[ch] = Float(scale)
            coefficients[cp + ch] = Float(slope)
            coefficients[2 * cp + ch] = Float(-scale * sumG / m - slope * shiftError)
            gradWeight[ch] = Float(sumGX * invstd)
            gradBias[ch] = Float(sumG)
        }
        map.lanes.withUnsafeBufferPointer { lanes in
            coefficients.withUnsafeBufferPointer { ks in
                nonisolated(unsafe) let (xp, gp, dp, lp, kp) = (x, gradOut, gradIn, lanes.baseAddress!, ks.baseAddress!)
                if layout.block == 16 {
                    // Both halves of a 64-byte position in one sweep, as in `blockedNormReLU`.
                    forEachRun(layout, cost: 3) { offset, l in
                        let c0 = load(lp + l), a0 = load(lp + cp + l), e0 = load(lp + 2 * cp + l)
                        let c1 = load(lp + l + 8), a1 = load(lp + cp + l + 8), e1 = load(lp + 2 * cp + l + 8)
                        let p0 = load(kp + l), q0 = load(kp + cp + l), r0 = load(kp + 2 * cp + l)
                        let p1 = load(kp + l + 8), q1 = load(kp + cp + l + 8), r1 = load(kp + 2 * cp + l + 8)
                        var o = offset
                        for _ in 0..<layout.spatial {
                            let x0 = load(xp + o), x1 = load(xp + o + 8)
                            let g0 = load(gp + o).replacing(with: 0, where: normReLU(x0, c0, a0, e0) .<= 0)
                            let g1 = load(gp + o + 8).replacing(with: 0, where: normReLU(x1, c1, a1, e1) .<= 0)
                            store(g0 * p0 + (x0 - c0) * q0 + r0, dp + o)
                            store(g1 * p1 + (x1 - c1) * q1 + r1, dp + o + 8)
                            o += 16
                        }
                    }
                    return
                }
                forEachLaneGroup(layout, cost: 3) { offset, l in
                    let center = walk.parameter(lp, l), a = walk.parameter(lp + cp, l), e = walk.parameter(lp + 2 * cp, l)
                    let k1 = walk.parameter(kp, l), k2 = walk.parameter(kp + cp, l), k3 = walk.parameter(kp + 2 * cp, l)
                    @inline(__always) func gradient(_ xv: SIMD8<Float>, _ gv: SIMD8<Float>) -> SIMD8<Float> {
                        gv.replacing(with: 0, where: normReLU(xv, center, a, e) .<= 0) * k1 + (xv - center) * k2 + k3
                    }
                    var o = offset
                    for _ in 0..<walk.count {
                        store(gradient(load(xp + o), load(gp + o)), dp + o)
                        o += walk.step
                    }
                    if walk.tail > 0 { walk.storeTail(gradient(walk.loadTail(xp + o), walk.loadTail(gp + o)), dp + o) }
                }
            }
        }
        return (gradWeight, gradBias)
    }

    // MARK: - Helpers

    /// One arithmetic for the forward pass and for the backward pass's ReLU mask, so that the
    /// mask is exactly where the forward output is positive.
    @inline(__always)
    private static func normReLU(_ x: SIMD8<Float>, _ center: SIMD8<Float>, _ a: SIMD8<Float>, _ e: SIMD8<Float>)
        -> SIMD8<Float> {
        let y = (x - center) * a + e
        return y.replacing(with: 0, where: y .< 0)
    }

    @inline(__always) private static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always) private static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// Runs `body(offset, lane)` for every run, in parallel: `offset` is its first element,
    /// `lane` its first padded channel.
    @inline(__always)
    private static func forEachRun(_ layout: ChannelBlockedLayout, cost: Int, _ body: (Int, Int) -> Void) {
        Parallel.forRanges(layout.runs, costPerItem: layout.runLength * cost) { range in
            for run in range { body(run * layout.runLength, (run % layout.channelBlocks) * layout.block) }
        }
    }

    /// Runs `body(offset, lane)` for every lane group of every run, in parallel over runs:
    /// `offset` is the group's first element, `lane` its first padded channel.
    @inline(__always)
    private static func forEachLaneGroup(_ layout: ChannelBlockedLayout, cost: Int, _ body: (Int, Int) -> Void) {
        Parallel.forRanges(layout.runs, costPerItem: layout.runLength * cost) { range in
            for run in range {
                for group in stride(from: 0, to: layout.block, by: 8) {
                    body(run * layout.runLength + group, (run % layout.channelBlocks) * layout.block + group)
                }
            }
        }
    }

    /// Per-channel sums over all runs, `sets` (1 or 2) values per channel: `body(offset, lane,
    /// first, second)` adds the sums of the lane group at element `offset` (first padded channel
    /// `lane`) to `first[0..<8]` and `second[0..<8]` (blocked) or to `first[0]` and `second[0]`
    /// (NCHW). Runs are reduced in parallel into `sets·B` Doubles each, and their sums added
    /// over the batch in Double. Returns `[sets, Cp]`.
    /// With 16-channel blocks, `paired(offset, lane, first, second)` (when given) sums a whole
    /// run, both halves of each position in one sweep, into `first[0..<16]` and `second[0..<16]`.
    private static func blockedChannelSums(
        _ layout: ChannelBlockedLayout, sets: Int = 1,
        paired: ((Int, Int, UnsafeMutablePointer<Double>, UnsafeMutablePointer<Double>) -> Void)? = nil,
        _ body: (Int, Int, UnsafeMutablePointer<Double>, UnsafeMutablePointer<Double>) -> Void
    ) -> [Double] {
        let b = layout.block, width = b * 2
        var perRun = [Double](repeating: 0, count: layout.runs * width)
        perRun.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let out = buffer.baseAddress!
            if b == 16, let paired {
                forEachRun(layout, cost: sets) { offset, lane in
                    let runScratch = out + (offset / layout.runLength) * width
                    paired(offset, lane, runScratch, runScratch + b)
                }
                return
            }
            forEachLaneGroup(layout, cost: sets) { offset, lane in
                let runScratch = out + (offset / layout.runLength) * width + lane % b
                body(offset, lane, runScratch, runScratch + b)
            }
        }
        var total = [Double](repeating: 0, count: layout.paddedChannels * sets)
        for run in 0..<layout.runs {
            let lane0 = (run % layout.channelBlocks) * b
            for set in 0..<sets {
                for lane in 0..<b { total[set * layout.paddedChannels + lane0 + lane] += perRun[run * width + set * b + lane] }
            }
        }
        return total
    }

    /// Σ f(x) over one lane group into `out[0..<8]` (lanes are channels) or `out[0]` (lanes
    /// are positions of one channel), float32 lanes flushed to Double every `flushEvery` vectors.
    @inline(__always)
    private static func laneGroupSums(_ x: UnsafePointer<Float>, _ walk: LaneWalk, _ out: UnsafeMutablePointer<Double>,
                                      _ f: (SIMD8<Float>) -> SIMD8<Float>) {
        var o = 0
        for start in stride(from: 0, to: walk.count, by: flushEvery) {
            var acc = SIMD8<Float>(repeating: 0)
            for _ in start..<Swift.min(walk.count, start + flushEvery) {
                acc += f(load(x + o))
                o += walk.step
            }
            flush(acc, out, walk)
        }
        if walk.tail > 0 { flush(f(walk.loadTail(x + o)).replacing(with: 0, where: .!walk.tailMask), out, walk) }
    }

    /// Σ (x − shift) and Σ (x − shift)² over one lane group into `sum` and `squares` (as
    /// `laneGroupSums`).
    @inline(__always)
    private static func laneGroupShiftedSums(_ x: UnsafePointer<Float>, _ walk: LaneWalk, _ shift: SIMD8<Float>,
                                             _ sum: UnsafeMutablePointer<Double>, _ squares: UnsafeMutablePointer<Double>) {
        var o = 0
        for start in stride(from: 0, to: walk.count, by: flushEvery) {
            var acc = SIMD8<Float>(repeating: 0), accSquares = SIMD8<Float>(repeating: 0)
            for _ in start..<Swift.min(walk.count, start + flushEvery) {
                let d = load(x + o) - shift
                acc += d
                accSquares += d * d
                o += walk.step
            }
            flush(acc, sum, walk); flush(accSquares, squares, walk)
        }
        if walk.tail > 0 {
            let d = (walk.loadTail(x + o) - shift).replacing(with: 0, where: .!walk.tailMask)
            flush(d, sum, walk); flush(d * d, squares, walk)
        }
    }

    /// `laneGroupShiftedSums` for both halves of a 16-channel run of `s` positions: lanes 0–7
    /// with `shift0`, 8–15 with `shift1`, into `sum[0..<16]` and `squares[0..<16]`.
    private static func pairedShiftedSums(_ x: UnsafePointer<Float>, _ s: Int, _ shift0: SIMD8<Float>, _ shift1: SIMD8<Float>,
                                          _ sum: UnsafeMutablePointer<Double>, _ squares: UnsafeMutablePointer<Double>) {
        var o = 0
        for start in stride(from: 0, to: s, by: flushEvery) {
            var s0 = SIMD8<Float>(repeating: 0), s1 = s0, q0 = s0, q1 = s0
            for _ in start..<Swift.min(s, start + flushEvery) {
                let d0 = load(x + o) - shift0, d1 = load(x + o + 8) - shift1
                s0 += d0; s1 += d1
                q0 += d0 * d0; q1 += d1 * d1
                o += 16
            }
            addLanes(s0, sum); addLanes(s1, sum + 8); addLanes(q0, squares); addLanes(q1, squares + 8)
        }
    }

    /// `laneGroupGradSums` for both halves of a 16-channel run of `s` positions (maps `m0` and
    /// `m1`: center, scale, shift), into `sumG[0..<16]` and `sumGX[0..<16]`.
    private static func pairedGradSums(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ s: Int,
                                       _ m0: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>),
                                       _ m1: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>),
                                       _ sumG: UnsafeMutablePointer<Double>, _ sumGX: UnsafeMutablePointer<Double>) {
        var o = 0
        for start in stride(from: 0, to: s, by: flushEvery) {
            var g0 = SIMD8<Float>(repeating: 0), g1 = g0, gx0 = g0, gx1 = g0
            for _ in start..<Swift.min(s, start + flushEvery) {
                let x0 = load(x + o), x1 = load(x + o + 8)
                let m0g = load(g + o).replacing(with: 0, where: normReLU(x0, m0.0, m0.1, m0.2) .<= 0)
                let m1g = load(g + o + 8).replacing(with: 0, where: normReLU(x1, m1.0, m1.1, m1.2) .<= 0)
                g0 += m0g; g1 += m1g
                gx0 += m0g * (x0 - m0.0); gx1 += m1g * (x1 - m1.0)
                o += 16
            }
            addLanes(g0, sumG); addLanes(g1, sumG + 8); addLanes(gx0, sumGX); addLanes(gx1, sumGX + 8)
        }
    }

    /// Adds eight float32 lanes to eight Doubles.
    @inline(__always) private static func addLanes(_ lanes: SIMD8<Float>, _ out: UnsafeMutablePointer<Double>) {
        for i in 0..<8 { out[i] += Double(lanes[i]) }
    }

    /// Σ g' and Σ g'·(x − center) over one lane group into `sumG` and `sumGX` (as
    /// `laneGroupSums`), where g' is `g` where the forward output was positive.
    @inline(__always)
    private static func laneGroupGradSums(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ walk: LaneWalk,
                                          _ center: SIMD8<Float>, _ a: SIMD8<Float>, _ e: SIMD8<Float>,
                                          _ sumG: UnsafeMutablePointer<Double>, _ sumGX: UnsafeMutablePointer<Double>) {
        var accG = SIMD8<Float>(repeating: 0), accGX = SIMD8<Float>(repeating: 0)
        @inline(__always) func add(_ xv: SIMD8<Float>, _ gv: SIMD8<Float>) {
            let masked = gv.replacing(with: 0, where: normReLU(xv, center, a, e) .<= 0)
            accG += masked
            accGX += masked * (xv - center)
        }
        var o = 0
        for start in stride(from: 0, to: walk.count, by: flushEvery) {
            for _ in start..<Swift.min(walk.count, start + flushEvery) {
                add(load(x + o), load(g + o))
                o += walk.step
            }
            flush(accG, sumG, walk); flush(accGX, sumGX, walk)
            accG = .zero; accGX = .zero
        }
        // The tail's other lanes are zero in g, so they add nothing.
        if walk.tail > 0 {
            add(walk.loadTail(x + o), walk.loadTail(g + o))
            flush(accG, sumG, walk); flush(accGX, sumGX, walk)
        }
    }

    /// Adds float32 lane sums to Double: lane by lane (lanes are channels) or all to `out[0]`.
    @inline(__always) private static func flush(_ lanes: SIMD8<Float>, _ out: UnsafeMutablePointer<Double>, _ walk: LaneWalk) {
        if walk.lanesAreChannels {
            for i in 0..<8 { out[i] += Double(lanes[i]) }
        } else {
            var total: Double = 0
            for i in 0..<8 { total += Double(lanes[i]) }
            out[0] += total
        }
    }
}
