import Testing
import TandemCore
import TandemTestSupport

@Suite struct PoolTests {
    @Test(arguments: [DType.float32, .float64])
    func maxPoolMatchesPyTorch(dtype: DType) throws {
        let file = try Golden.load("ops_pool_norm_act")
        let x = try file.tensor("maxpool.x").to(dtype).requiringGrad()
        let out = try x.maxPool2d(kernelSize: [2], stride: [2])
        if let m = Closeness.mismatch(out, try file.tensor("maxpool.out"), rtol: 1e-5, atol: 1e-6, "out") { Issue.record("\(m)") }
        try (out * file.tensor("maxpool.upstream").to(dtype)).sum().backward()
        if let m = Closeness.mismatch(try #require(x.grad), try file.tensor("maxpool.grad_x"), rtol: 1e-5, atol: 1e-6, "grad_x") {
            Issue.record("\(m)")
        }
    }

    /// Ties go to the first maximum in row-major window order; padding never wins.
    @Test func maxPoolTiesAndPadding() throws {
        let x = Tensor([1, 1, 1, 1, -2, -2, -2, -2, -3] as [Float], shape: [1, 1, 3, 3]).requiringGrad()
        let y = try x.maxPool2d(kernelSize: [2], stride: [1])
        #expect(y.toFloatArray() == [1, 1, 1, -2])
        try y.sum().backward()
        #expect(try #require(x.grad).toFloatArray() == [1, 1, 0, 1, 1, 0, 0, 0, 0])
        let z = try Tensor([-5, -6, -7, -8] as [Float], shape: [1, 1, 2, 2]).maxPool2d(kernelSize: [3], stride: [2], padding: [1])
        #expect(z.toFloatArray() == [-5])
    }

    struct MaxPoolCase: Sendable, CustomStringConvertible {
        var shape: [Int], kernel: [Int], stride: [Int], padding: [Int]
        var description: String { "x\(shape) k\(kernel) s\(stride) p\(padding)" }
    }

    /// The vectorised float32 paths (8 and 4 lanes; strides 1, 2 and gathered 3; padded
    /// borders) against the scalar float64 loop, with many ties and a few NaNs.
    @Test(arguments: [
        MaxPoolCase(shape: [2, 3, 28, 28], kernel: [2], stride: [2], padding: [0]),
        MaxPoolCase(shape: [2, 3, 14, 14], kernel: [2], stride: [2], padding: [0]),
        MaxPoolCase(shape: [1, 2, 10, 19], kernel: [2], stride: [2], padding: [0]),
        MaxPoolCase(shape: [1, 2, 9, 9], kernel: [2], stride: [2], padding: [0]),
        MaxPoolCase(shape: [2, 2, 17, 21], kernel: [3], stride: [2], padding: [1]),
        MaxPoolCase(shape: [1, 2, 12, 16], kernel: [3], stride: [1], padding: [1]),
        MaxPoolCase(shape: [1, 2, 11, 30], kernel: [2, 3], stride: [1, 3], padding: [0, 1]),
        MaxPoolCase(shape: [1, 1, 6, 40], kernel: [1, 1], stride: [1, 2], padding: [0]),
    ])
    func maxPoolVectorPathsMatchScalarLoop(c: MaxPoolCase) throws {
        var values = Tensor.randn(c.shape, dtype: .float64, generator: Generator(seed: 5)).toDoubleArray()
            .map { ($0 * 2).rounded() / 2 }
        for i in stride(from: 7, to: values.count, by: 97) { values[i] = .nan }
        values[3] = -.infinity
        let x32 = Tensor(values, shape: c.shape).requiringGrad()
        let x64 = Tensor(values, shape: c.shape, dtype: .float64).requiringGrad()
        let y32 = try x32.maxPool2d(kernelSize: c.kernel, stride: c.stride, padding: c.padding)
        let y64 = try x64.maxPool2d(kernelSize: c.kernel, stride: c.stride, padding: c.padding)
        #expect(Closeness.mismatch(y32, y64, rtol: 0, atol: 0, "out") == nil)
        let up = Tensor.randn(y32.shape, generator: Generator(seed: 6))
        try (y32 * up).sum().backward()
        try (y64 * up.to(.float64)).sum().backward()
        #expect(Closeness.mismatch(try #require(x32.grad), try #require(x64.grad), rtol: 1e-6, atol: 1e-7, "grad") == nil)
    }

    @Test func avgPoolValues() throws {
        let x = Tensor((1...9).map(Float.init), shape: [1, 1, 3, 3])
        let incl = try x.avgPool2d(kernelSize: [3], stride: [1], padding: [1])
        let excl = try x.avgPool2d(kernelSize: [3], stride: [1], padding: [1], countIncludePad: false)
        #expect(Closeness.mismatch(incl, Tensor([12 / 9, 21 / 9, 16 / 9, 27 / 9, 45 / 9, 33 / 9, 24 / 9, 39 / 9, 28 / 9] as [Float],
                                                shape: [1, 1, 3, 3]), "include pad") == nil)
        #expect(Closeness.mismatch(excl, Tensor([3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7] as [Float], shape: [1, 1, 3, 3]),
                                   "exclude pad") == nil)
        let plain = try x.avgPool2d(kernelSize: [2])
        #expect(plain.toFloatArray() == [3])
    }

    @Test func adaptiveAvgPoolWindows() throws {
        // 5 → 3 uses rows/cols [0, 2), [1, 4), [3, 5).
        let x = Tensor((0..<25).map(Float.init), shape: [1, 1, 5, 5])
        let y = try x.adaptiveAvgPool2d(outputSize: [3])
        let rows = [(0, 2), (1, 4), (3, 5)]
        var expected: [Float] = []
        for (r0, r1) in rows {
            for (c0, c1) in rows {
                var total: Float = 0
                for r in r0..<r1 { for c in c0..<c1 { total += Float(r * 5 + c) } }
                expected.append(total / Float((r1 - r0) * (c1 - c0)))
            }
        }
        #expect(Closeness.mismatch(y, Tensor(expected, shape: [1, 1, 3, 3])) == nil)
        #expect(try x.adaptiveAvgPool2d(outputSize: [1]).toFloatArray() == [12])
        #expect(try x.adaptiveAvgPool2d(outputSize: [2, 7]).shape == [1, 1, 2, 7])
    }

    @Test func threeDimensionalInput() throws {
        let x = Tensor.randn([3, 6, 6], generator: Generator(seed: 3))
        let y = try x.maxPool2d(kernelSize: [2])
        let y4 = try x.unsqueeze(0).maxPool2d(kernelSize: [2])
        #expect(y.shape == [3, 3, 3])
        #expect(y.toFloatArray() == y4.toFloatArray())
    }

    // MARK: Finite differences (float64)

    @Test func maxPoolFiniteDifferences() throws {
        // Random normals: no ties, so the max is differentiable at the sample point.
        let x = Tensor.randn([2, 2, 7, 6], dtype: .float64, generator: Generator(seed: 21))
        for (k, s, p) in [([2], [2] as [Int]?, [0]), ([3], [2], [1]), ([3, 2], [1, 2], [1, 0]), ([2], nil, [1])] {
            let result = try GradCheck.check([x]) { xs in try xs[0].maxPool2d(kernelSize: k, stride: s, padding: p) }
            #expect(result.passed, "k \(k) s \(String(describing: s)) p \(p): \(result.report)")
        }
    }

    @Test(arguments: [true, false])
    func avgPoolFiniteDifferences(countIncludePad: Bool) throws {
        let x = Tensor.randn([2, 2, 7, 6], dtype: .float64, generator: Generator(seed: 22))
        for (k, s, p) in [([3], [2], [1]), ([2, 3], [1, 2], [1, 1]), ([2], [2], [0])] {
            let result = try GradCheck.check([x]) { xs in
                try xs[0].avgPool2d(kernelSize: k, stride: s, padding: p, countIncludePad: countIncludePad)
            }
            #expect(result.passed, "k \(k) s \(s) p \(p): \(result.report)")
        }
    }

    @Test func adaptiveAvgPoolFiniteDifferences() throws {
        let x = Tensor.randn([2, 2, 5, 7], dtype: .float64, generator: Generator(seed: 23))
        for size in [[3], [2, 4], [5, 7], [1], [7, 3]] {
            let result = try GradCheck.check([x]) { xs in try xs[0].adaptiveAvgPool2d(outputSize: size) }
            #expect(result.passed, "output \(size): \(result.report)")
        }
    }

    // MARK: Bad inputs

    @Test func badInputs() {
        let x = Tensor.zeros([1, 2, 4, 4])
        expectTensorError("maxPool2d", mentions: ["[4, 4]"]) { try Tensor.zeros([4, 4]).maxPool2d(kernelSize: [2]) }
        expectTensorError("maxPool2d", mentions: ["larger"]) { try x.maxPool2d(kernelSize: [5]) }
        expectTensorError("maxPool2d", mentions: ["padding"]) { try x.maxPool2d(kernelSize: [2], padding: [2]) }
        expectTensorError("maxPool2d", mentions: ["kernelSize"]) { try x.maxPool2d(kernelSize: [0]) }
        expectTensorError("maxPool2d", mentions: ["stride"]) { try x.maxPool2d(kernelSize: [2], stride: [1, 1, 1]) }
        expectTensorError("avgPool2d", mentions: ["larger"]) { try x.avgPool2d(kernelSize: [3, 6]) }
        expectTensorError("avgPool2d", mentions: ["int64"]) { try x.to(.int64).avgPool2d(kernelSize: [2]) }
        expectTensorError("adaptiveAvgPool2d", mentions: ["outputSize"]) { try x.adaptiveAvgPool2d(outputSize: [0]) }
        expectTensorError("adaptiveAvgPool2d", mentions: ["[2, 4]"]) { try Tensor.zeros([2, 4]).adaptiveAvgPool2d(outputSize: [1]) }
    }
}
