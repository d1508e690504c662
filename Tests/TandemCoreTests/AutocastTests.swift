import Foundation
import Testing
import TandemCore

/// float16/bfloat16 conversions at the edges, and `autocast`'s op lists and gradient dtypes.
@Suite struct LowPrecisionConversionTests {
    func bf16(_ x: Float) -> UInt16 { BFloat16(x).bitPattern }

    @Test func bfloat16RoundsFloatToNearestEven() {
        // 1 + 2^-8 lies halfway between 1 (0x3F80, even) and 1 + 2^-7 (0x3F81): goes to even.
        #expect(bf16(Float(bitPattern: 0x3F80_8000)) == 0x3F80)
        // 1 + 3·2^-8 lies halfway between 0x3F81 (odd) and 0x3F82 (even): goes up to even.
        #expect(bf16(Float(bitPattern: 0x3F81_8000)) == 0x3F82)
        // Just above and below a tie round to the nearest.
        #expect(bf16(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(bf16(Float(bitPattern: 0x3F81_7FFF)) == 0x3F81)
        // Negative ties mirror the positive ones.
        #expect(bf16(Float(bitPattern: 0xBF80_8000)) == 0xBF80)
        #expect(bf16(Float(bitPattern: 0xBF81_8000)) == 0xBF82)
        // Exactly representable values are unchanged.
        for v: Float in [0, -0.0, 1, -2, 0.5, 3.140625] { #expect(BFloat16(v).floatValue.bitPattern == v.bitPattern) }
    }

    @Test func bfloat16SubnormalsInfinitiesAndNaN() {
        // Subnormals: the smallest bfloat16 subnormal is 2^-133 (0x0001).
        #expect(bf16(Float(bitPattern: 0x0001_0000)) == 0x0001)
        #expect(bf16(Float(bitPattern: 0x0000_8000)) == 0x0000)  // half of it: tie to even (0)
        #expect(bf16(Float(bitPattern: 0x0001_8000)) == 0x0002)  // 1.5 ulp: tie to even (2)
        #expect(bf16(Float(bitPattern: 0x0000_8001)) == 0x0001)
        #expect(bf16(Float.leastNonzeroMagnitude) == 0x0000)
        #expect(bf16(-Float.leastNonzeroMagnitude) == 0x8000)   // -0 keeps its sign
        // The largest subnormal rounds up into the smallest normal.
        #expect(bf16(Float(bitPattern: 0x007F_FFFF)) == 0x0080)
        // Infinities stay; overflow past the largest finite bfloat16 (0x7F7F) plus half an ulp → inf.
        #expect(bf16(.infinity) == 0x7F80)
        #expect(bf16(-.infinity) == 0xFF80)
        #expect(bf16(Float(bitPattern: 0x7F7F_7FFF)) == 0x7F7F)
        #expect(bf16(Float(bitPattern: 0x7F7F_8000)) == 0x7F80)  // tie at the top: to even = inf
        #expect(bf16(.greatestFiniteMagnitude) == 0x7F80)
        // NaN stays NaN (quiet, sign kept), even a NaN whose payload sits only in the low bits.
        let lowPayloadNaN = Float(bitPattern: 0x7F80_0001)
        #expect(lowPayloadNaN.isNaN)
        #expect(BFloat16(lowPayloadNaN).floatValue.isNaN)
        #expect(BFloat16(Float.nan).floatValue.isNaN)
        #expect(bf16(-Float.nan) & 0x8000 == 0x8000)
    }

    @Test func bfloat16FromDoubleRoundsOnce() {
        // 1 + 2^-8 + 2^-40 rounds to Float as 1 + 2^-8 (a bfloat16 tie); rounding that again
        // would give 1.0. The correct single rounding is 1 + 2^-7.
        let x = 1 + 0x1p-8 + 0x1p-40
        #expect(Float(x) == 1 + 0x1p-8)
        #expect(BFloat16(x).bitPattern == 0x3F81)
        #expect(BFloat16(-x).bitPattern == 0xBF81)
        #expect(BFloat16(1 + 0x1p-8).bitPattern == 0x3F80)          // an exact tie still goes to even
        #expect(BFloat16(1e300).bitPattern == 0x7F80)                 // beyond Float: inf
        #expect(BFloat16(-1e300).bitPattern == 0xFF80)
        #expect(BFloat16(1e-300).bitPattern == 0x0000)                // below bfloat16: +0
        #expect(BFloat16(-1e-300).bitPattern == 0x8000)
        #expect(BFloat16(Double.nan).floatValue.isNaN)
        #expect(BFloat16(Double.infinity).bitPattern == 0x7F80)
        // Through tensors: float64 → bfloat16 uses the same single rounding.
        let t = Tensor([x, -x, 1e300], shape: [3], dtype: .float64).to(.bfloat16)
        #expect(t.toFloatArray() == [1 + 0x1p-7, -(1 + 0x1p-7), .infinity])
    }

    @Test func float16TensorConversionsRoundOnce() {
        // float16: 1 + 2^-11 is a tie between 1 and 1 + 2^-10 (to even: 1); 1 + 2^-11 + 2^-40
        // must go up even though Float(x) is the tie.
        let x = 1 + 0x1p-11 + 0x1p-40
        let t = Tensor([x, 1 + 0x1p-11, 65520, 1e-8, 0x1p-24, -0x1p-25, .nan], shape: [7], dtype: .float64).to(.float16)
        let v = t.toDoubleArray()
        #expect(v[0] == 1 + 0x1p-10)
        #expect(v[1] == 1)
        #expect(v[2] == .infinity)          // 65520 is the tie above the largest float16 (65504)
        #expect(v[3] == 0x1p-24 * 0)        // 1e-8 < 2^-25: rounds to 0
        #expect(v[4] == 0x1p-24)            // smallest subnormal is exact
        #expect(v[5] == 0 && v[5].sign == .minus)  // exactly half the smallest subnormal: tie to even (-0)
        #expect(v[6].isNaN)
        // float32 → float16 → float32 keeps float16 values exactly.
        let f = Tensor([0.1, -3.5, 1e5, 0x1p-20] as [Float], shape: [4]).to(.float16).to(.float32).toFloatArray()
        #expect(f == [Float(Float16(Float(0.1))), -3.5, .infinity, Float(0x1p-20)])
    }

    @Test func bfloat16TensorRoundTrip() {
        let values: [Float] = [1, 1 + 0x1p-8, 1 + 3 * 0x1p-8, -0.0, .infinity, -.infinity, 0x1p-130, 3.3e38]
        let back = Tensor(values, shape: [values.count]).to(.bfloat16).to(.float32).toFloatArray()
        #expect(back.map(\.bitPattern) == values.map { BFloat16($0).floatValue.bitPattern })
        let nan = Tensor([Float.nan], shape: [1]).to(.bfloat16).to(.float32).toFloatArray()
        #expect(nan[0].isNaN)
    }
}

@Suite struct AutocastTests {
    let x = Tensor.randn([4, 6], generator: Generator(seed: 1))
    let w = Tensor.randn([5, 6], generator: Generator(seed: 2)).requiringGrad()
    let b = Tensor.randn([5], generator: Generator(seed: 3)).requiringGrad()

    @Test(arguments: [DType.bfloat16, .float16])
    func lowPrecisionOpsRunLow(dtype: DType) throws {
        try autocast(dtype: dtype) { () throws in
            #expect(Autocast.dtype == dtype)
            #expect(try Tensor.matmul(x, w.t()).dtype == dtype)
            #expect(try Tensor.linear(x, weight: w, bias: b).dtype == dtype)
            let img = Tensor.randn([2, 3, 8, 8], generator: Generator(seed: 4))
            let k = Tensor.randn([4, 3, 3, 3], generator: Generator(seed: 5))
            #expect(try Tensor.conv2d(img, weight: k, bias: Tensor.zeros([4]), padding: [1]).dtype == dtype)
            let seq = Tensor.randn([2, 3, 10], generator: Generator(seed: 6))
            #expect(try Tensor.conv1d(seq, weight: Tensor.randn([4, 3, 3]), bias: nil).dtype == dtype)
            #expect(try Tensor.bmm(Tensor.randn([2, 3, 4]), Tensor.randn([2, 4, 5])).dtype == dtype)
        }
        #expect(Autocast.dtype == nil)
        #expect(try Tensor.matmul(x, w.t()).dtype == .float32)
    }

    @Test func lowPrecisionResultsAreRoundedFloat32Products() throws {
        // The product of the rounded operands, accumulated in float32, rounded once.
        let xr = x.to(.bfloat16).to(.float32), wr = w.detach().to(.bfloat16).to(.float32)
        let expected = try Tensor.matmul(xr, wr.t()).to(.bfloat16).toFloatArray()
        let got = try autocast { try Tensor.matmul(x, w.t()) }.toFloatArray()
        #expect(got == expected)
    }

    @Test func fp32ListStaysFloat32() throws {
        try autocast(dtype: .bfloat16) { () throws in
            let logits = try Tensor.linear(x, weight: w, bias: b)
            #expect(logits.dtype == .bfloat16)
            let target = Tensor([0, 1, 2, 3], shape: [4], dtype: .int64)
            #expect(try logits.softmax(axis: 1).dtype == .float32)
            #expect(try logits.logSoftmax(axis: 1).dtype == .float32)
            #expect(try Tensor.crossEntropy(logits, target: target).dtype == .float32)
            #expect(try Tensor.nllLoss(logProbs: logits.logSoftmax(axis: 1), target: target).dtype == .float32)
            #expect(try Tensor.mseLoss(logits, Tensor.zeros([4, 5])).dtype == .float32)
            #expect(try logits.sum().dtype == .float32)
            #expect(try logits.mean().dtype == .float32)
            #expect(try logits.max(axis: 1).values.dtype == .float32)
            #expect(try Tensor.layerNorm(logits, normalizedShape: [5], weight: nil, bias: nil).dtype == .float32)
            var rm: Tensor? = Tensor.zeros([5]), rv: Tensor? = Tensor.ones([5])
            #expect(try Tensor.batchNorm(logits, runningMean: &rm, runningVar: &rv, weight: nil, bias: nil,
                                         training: true).dtype == .float32)
            #expect(rm?.dtype == .float32)
            // Elementwise ops compute in float32 and keep the low dtype, as in PyTorch.
            #expect(try logits.relu().dtype == .bfloat16)
            #expect(try (logits * logits).dtype == .bfloat16)
            // Mixed low and float32 operands promote to float32.
            #expect(try (logits + Tensor.zeros([5])).dtype == .float32)
        }
    }

    @Test func nestingAndDisabling() throws {
        try autocast(dtype: .bfloat16) { () throws in
            try autocast(dtype: .float16) { () throws in #expect(try Tensor.matmul(x, w.t()).dtype == .float16) }
            try autocast(enabled: false) { () throws in #expect(try Tensor.matmul(x, w.t()).dtype == .float32) }
            #expect(try Tensor.matmul(x, w.t()).dtype == .bfloat16)
        }
    }

    @Test(arguments: [DType.bfloat16, .float16])
    func parameterGradientsArriveInFloat32(dtype: DType) throws {
        let img = Tensor.randn([2, 3, 8, 8], generator: Generator(seed: 7))
        let k = try (Tensor.randn([4, 3, 3, 3], generator: Generator(seed: 8)) * 0.2).requiringGrad()
        let kb = Tensor.zeros([4]).requiringGrad()
        let fw = try (Tensor.randn([3, 4 * 4 * 4], generator: Generator(seed: 9)) * 0.1).requiringGrad()
        let target = Tensor([0, 2], shape: [2], dtype: .int64)
        let loss = try autocast(dtype: dtype) { () throws -> Tensor in
            let h = try Tensor.conv2d(img, weight: k, bias: kb, padding: [1]).relu().maxPool2d(kernelSize: [2])
            let logits = try Tensor.linear(h.flatten(start: 1), weight: fw, bias: nil)
            #expect(logits.dtype == dtype)
            return try Tensor.crossEntropy(logits, target: target)
        }
        #expect(loss.dtype == .float32)
        try loss.backward()
        for p in [k, kb, fw] {
            let g = try #require(p.grad)
            #expect(g.dtype == .float32)
            #expect(g.shape == p.shape)
        }
        #expect(k.dtype == .float32)
        // The gradients are close to float32's.
        let loss32 = try Tensor.crossEntropy(Tensor.linear(Tensor.conv2d(img, weight: k.detach().requiringGrad(), bias: kb.detach(), padding: [1])
            .relu().maxPool2d(kernelSize: [2]).flatten(start: 1), weight: fw.detach(), bias: nil), target: target)
        #expect(Swift.abs(try loss32.item() - loss.item()) < 0.05)
    }
}

@Suite struct BFloat16MatmulTests {
    /// Larger products (oneDNN's bfloat16 matmul where available) agree with float32 products of the
    /// rounded operands within float32-accumulation error, for every transpose layout and batches.
    @Test func bfloat16MatmulMatchesRoundedFloat32() throws {
        let a = Tensor.randn([3, 64, 96], generator: Generator(seed: 11)).to(.bfloat16)
        let b = Tensor.randn([96, 80], generator: Generator(seed: 12)).to(.bfloat16)
        for (x, y) in [(a, b), (try a.transpose(-1, -2).contiguous().transpose(-1, -2), try b.t().contiguous().t())] {
            let got = try Tensor.matmul(x, y)
            #expect(got.dtype == .bfloat16)
            let want = try Tensor.matmul(x.to(.float32), y.to(.float32))
            let diff = try (got.to(.float32) - want).abs().amax().item()
            let scale = try want.abs().amax().item()
            #expect(diff <= scale * 0x1p-7, "max difference \(diff) of \(scale)")
        }
        // Gradients through the bfloat16 product reach float32 leaves in float32.
        let w = Tensor.randn([96, 80], generator: Generator(seed: 13)).requiringGrad()
        try Tensor.matmul(a, w.to(.bfloat16)).to(.float32).sum().backward()
        #expect(w.grad?.dtype == .float32)
        let expected = try a.to(.float32).sum(axes: [0, 1]).unsqueeze(1).expand([96, 80])
        let gdiff = try (w.grad! - expected).abs().amax().item()
        #expect(gdiff <= (try expected.abs().amax().item()) * 0x1p-7)
    }
}

@Suite struct BFloat16ConvTests {
    /// bfloat16 convolution (oneDNN where available) agrees with float32 convolution of the
    /// rounded operands, forward and backward, with and without groups and bias.
    @Test(arguments: [(1, true), (2, false)])
    func bfloat16ConvMatchesRoundedFloat32(groups: Int, withBias: Bool) throws {
        let x = Tensor.randn([4, 4, 12, 12], generator: Generator(seed: 21)).to(.bfloat16)
        let w = Tensor.randn([8, 4 / groups, 3, 3], generator: Generator(seed: 22)).to(.bfloat16)
        let b = withBias ? Tensor.randn([8], generator: Generator(seed: 23)).to(.bfloat16) : nil
        let up = Tensor.randn([4, 8, 12, 12], generator: Generator(seed: 24))
        func run(_ x: Tensor, _ w: Tensor, _ b: Tensor?) throws -> [Tensor] {
            let (xl, wl, bl) = (x.requiringGrad(), w.requiringGrad(), b?.requiringGrad())
            let y = try Tensor.conv2d(xl, weight: wl, bias: bl, padding: [1], groups: groups)
            try (y.to(.float32) * up).sum().backward()
            return [y, xl.grad!, wl.grad!] + (bl.map { [$0.grad!] } ?? [])
        }
        let low = try run(x, w, b)
        let wide = try run(x.to(.float32), w.to(.float32), b?.to(.float32))
        for (name, (l, f)) in zip(["output", "input grad", "weight grad", "bias grad"], zip(low, wide)) {
            #expect(l.dtype == .bfloat16, "\(name)")
            let diff = try (l.to(.float32) - f).abs().amax().item()
            let scale = try f.abs().amax().item()
            #expect(diff <= scale * 0x1p-6, "\(name): max difference \(diff) of \(scale)")
        }
    }
}
