import Foundation
import Testing
import XCTest
@testable import TandemCore
import TandemTestSupport

/// `Tensor.scaledDotProductAttention` against PyTorch's `F.scaled_dot_product_attention`
/// (scripts/make_transformer_golden.py): outputs and the gradients of q, k and v.
@Suite struct AttentionTests {
    static let cases: [(name: String, causal: Bool, mask: String?, scale: Double?)] = [
        ("plain", false, nil, nil), ("causal_odd", true, nil, nil), ("gqa", false, nil, nil), ("mqa_causal", true, nil, nil),
        ("bool_mask", false, "bool", nil), ("float_mask", false, "float", 0.3), ("long_causal", true, nil, nil),
        ("float32_causal", true, nil, nil),
    ]

    @Test(arguments: cases.map(\.name)) func matchesPyTorch(name: String) throws {
        let c = Self.cases.first { $0.name == name }!
        let golden = try Golden.load("transformer_ops")
        let p = "attention.\(name)."
        let q = try golden.tensor(p + "q").requiringGrad(), k = try golden.tensor(p + "k").requiringGrad()
        let v = try golden.tensor(p + "v").requiringGrad()
        var mask: Tensor?
        if c.mask == "bool" { mask = try golden.tensor(p + "mask").gt(0.5) }
        if c.mask == "float" { mask = try golden.tensor(p + "mask") }
        let out = try Tensor.scaledDotProductAttention(q, k, v, mask: mask, isCausal: c.causal, scale: c.scale)
        try out.backward(golden.tensor(p + "upstream"))
        // float64 agrees to rounding; float32 sums of up to 300 products of unit-size values.
        let (rtol, atol) = q.dtype == .float64 ? (1e-10, 1e-12) : (2e-4, 2e-5)
        #expect(try golden.mismatch(out, p + "out", rtol: rtol, atol: atol) == nil)
        for (x, t) in [("q", q), ("k", k), ("v", v)] {
            #expect(try golden.mismatch(t.grad, p + "grad_" + x, rtol: rtol, atol: atol) == nil, "\(name) d\(x)")
        }
    }

    /// The tiled kernel equals the formula softmax(q·kᵀ·scale + mask)·v built from primitives,
    /// over several tiles, with grouped heads, in float32 (values and gradients).
    @Test func equalsTheNaiveFormula() throws {
        let g = Generator(seed: 4)
        let q = Tensor.randn([2, 4, 130, 24], generator: g), k = Tensor.randn([2, 2, 150, 24], generator: g)
        let v = Tensor.randn([2, 2, 150, 20], generator: g)
        let upstream = Tensor.randn([2, 4, 130, 20], generator: g)
        func naive(_ q: Tensor, _ k: Tensor, _ v: Tensor) throws -> Tensor {
            let kk = try k.unsqueeze(2).expand([2, 2, 2, 150, 24]).reshape([2, 4, 150, 24])
            let vv = try v.unsqueeze(2).expand([2, 2, 2, 150, 20]).reshape([2, 4, 150, 20])
            let scores = try Tensor.matmul(q, kk.transpose(-1, -2)) / Double(24).squareRoot()
            return try Tensor.matmul(scores.softmax(axis: -1), vv)
        }
        let (a, b) = ([q, k, v].map { $0.requiringGrad() }, [q, k, v].map { $0.requiringGrad() })
        let fast = try Tensor.scaledDotProductAttention(a[0], a[1], a[2])
        let slow = try naive(b[0], b[1], b[2])
        try fast.backward(upstream)
        try slow.backward(upstream)
        #expect(Closeness.mismatch(fast, slow, rtol: 1e-4, atol: 1e-5, "output") == nil)
        for i in 0..<3 {
            #expect(Closeness.mismatch(try #require(a[i].grad), try #require(b[i].grad), rtol: 1e-3, atol: 1e-4, "grad \(i)") == nil)
        }
    }

    /// Finite differences in float64: causal with grouped heads, a float mask, and dropout (its
    /// mask is a function of the seed, so the function is deterministic).
    @Test func gradientCheck() throws {
        let g = Generator(seed: 9)
        let q = Tensor.randn([1, 2, 5, 3], dtype: .float64, generator: g), k = Tensor.randn([1, 1, 6, 3], dtype: .float64, generator: g)
        let v = Tensor.randn([1, 1, 6, 2], dtype: .float64, generator: g)
        let causal = try GradCheck.check([q, k.narrow(axis: 2, start: 0, length: 5), v.narrow(axis: 2, start: 0, length: 5)]) {
            try Tensor.scaledDotProductAttention($0[0], $0[1], $0[2], isCausal: true)
        }
        #expect(causal.passed, "\(causal)")
        let mask = Tensor.randn([5, 6], dtype: .float64, generator: g)
        let masked = try GradCheck.check([q, k, v]) { try Tensor.scaledDotProductAttention($0[0], $0[1], $0[2], mask: mask) }
        #expect(masked.passed, "\(masked)")
        let dropped = try GradCheck.check([q, k, v]) {
            try Tensor.scaledDotProductAttention($0[0], $0[1], $0[2], dropout: 0.3, seed: 42)
        }
        #expect(dropped.passed, "\(dropped)")
    }

    /// Dropout is reproducible from the seed, different across seeds, and keeps the expectation.
    @Test func dropoutFollowsTheSeed() throws {
        let g = Generator(seed: 1)
        let q = Tensor.randn([1, 2, 64, 8], generator: g), k = Tensor.randn([1, 2, 64, 8], generator: g)
        let v = Tensor.ones([1, 2, 64, 8])
        let a = try Tensor.scaledDotProductAttention(q, k, v, dropout: 0.5, seed: 7).toFloatArray()
        let b = try Tensor.scaledDotProductAttention(q, k, v, dropout: 0.5, seed: 7).toFloatArray()
        let c = try Tensor.scaledDotProductAttention(q, k, v, dropout: 0.5, seed: 8).toFloatArray()
        #expect(a == b && a != c)
        // With v = 1 every output is the row's kept weight ÷ (1 − p): 1 on average.
        let mean = a.reduce(0, +) / Float(a.count)
        #expect(Swift.abs(mean - 1) < 0.05, "mean \(mean)")
    }

    /// Wrong shapes are typed errors naming the op.
    @Test func wrongShapesAreTypedErrors() {
        func fails(_ body: () throws -> Tensor) -> Bool {
            do { _ = try body(); return false } catch let e as TensorError { return "\(e)".contains("scaledDotProductAttention") } catch { return false }
        }
        #expect(fails { try Tensor.scaledDotProductAttention(Tensor.zeros([1, 3, 4, 8]), Tensor.zeros([1, 2, 4, 8]), Tensor.zeros([1, 2, 4, 8])) })
        #expect(fails { try Tensor.scaledDotProductAttention(Tensor.zeros([1, 2, 4, 8]), Tensor.zeros([1, 2, 4, 7]), Tensor.zeros([1, 2, 4, 8])) })
        #expect(fails { try Tensor.scaledDotProductAttention(Tensor.zeros([1, 2, 4, 8]), Tensor.zeros([1, 2, 5, 8]), Tensor.zeros([1, 2, 5, 8]),
                                                             mask: Tensor.zeros([3, 5])) })
    }
}

/// Attention's memory grows with L·d, not L²: a 16k-token causal attention (forward and
/// backward) raises the process's peak resident memory by far less than one [L, L] float32
/// matrix (1 GiB). XCTest runs it alone, so the peak is this test's.
final class AttentionMemoryTests: XCTestCase {
    func testSixteenThousandTokensInBoundedMemory() throws {
        func peakMiB() -> Double {
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return Double(usage.ru_maxrss) / 1024
        }
        let before = peakMiB()
        let l = 16_384, d = 16
        let g = Generator(seed: 3)
        let q = Tensor.randn([1, 1, l, d], generator: g).requiringGrad(), k = Tensor.randn([1, 1, l, d], generator: g).requiringGrad()
        let v = Tensor.randn([1, 1, l, d], generator: g).requiringGrad()
        let out = try Tensor.scaledDotProductAttention(q, k, v, isCausal: true)
        try out.sum().backward()
        XCTAssertNotNil(q.grad)
        XCTAssertTrue(q.grad!.isAllFinite() && k.grad!.isAllFinite() && v.grad!.isAllFinite())
        let grown = peakMiB() - before
        XCTAssertLessThan(grown, 256, "peak resident memory grew by \(grown) MiB for L = \(l)")
    }
}
