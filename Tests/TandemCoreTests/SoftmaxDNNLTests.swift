import Testing
import Foundation
@testable import TandemCore
import TandemTestSupport

/// float32 softmax and log-softmax of at least `DNNLSoftmax.minimumElements` elements run on
/// oneDNN; they must agree with the Swift kernels (which smaller inputs use), special rows
/// included: −∞ entries, all −∞ rows, NaN, +∞ and large magnitudes.
@Suite struct SoftmaxDNNLTests {
    /// `[rows, n]` float32 values: random rows, then the special rows at the top.
    static func input(rows: Int, n: Int, seed: UInt64) -> [Float] {
        var x = Tensor.randn([rows, n], dtype: .float32, generator: Generator(seed: seed)).toDoubleArray().map { Float($0 * 3) }
        func row(_ r: Int, _ body: (inout [Float], Int) -> Void) { if r < rows { body(&x, r * n) } }
        row(0) { x, o in for j in stride(from: 0, to: n, by: 3) { x[o + j] = -.infinity } }   // some −∞ (all when n = 1)
        row(1) { x, o in for j in 0..<n { x[o + j] = -.infinity } }                           // all −∞
        row(2) { x, o in x[o + n / 2] = .nan }
        row(3) { x, o in x[o + n - 1] = .infinity }
        row(4) { x, o in for j in 0..<n { x[o + j] = Float(j % 3 - 1) * 1e30 } }
        row(5) { x, o in for j in 0..<n { x[o + j] *= 1e4 } }
        row(6) { x, o in for j in 0..<n { x[o + j] = 7 } }
        return x
    }

    /// The op on row blocks small enough for the Swift kernels, and its gradient for `upstream`.
    static func swiftReference(_ x: Tensor, upstream: Tensor, log: Bool) throws -> (Tensor, Tensor) {
        let n = x.shape[1], block = Swift.max(1, (DNNLSoftmax.minimumElements - 1) / n)
        var outs: [Tensor] = [], grads: [Tensor] = []
        for start in stride(from: 0, to: x.shape[0], by: block) {
            let length = Swift.min(block, x.shape[0] - start)
            let xb = try x.narrow(axis: 0, start: start, length: length).contiguousStorage().requiringGrad()
            let out = log ? try xb.logSoftmax(axis: 1) : try xb.softmax(axis: 1)
            try out.backward(try upstream.narrow(axis: 0, start: start, length: length).contiguousStorage())
            outs.append(out.detach())
            grads.append(try #require(xb.grad))
        }
        return (try Tensor.cat(outs, axis: 0), try Tensor.cat(grads, axis: 0))
    }

    func check(rows: Int, n: Int, log: Bool, axis0: Bool = false) throws {
        let values = Self.input(rows: rows, n: n, seed: UInt64(rows * 31 + n))
        let x = Tensor(values, shape: [rows, n])
        let upstream = Tensor.randn([rows, n], dtype: .float32, generator: Generator(seed: 7))
        let (wantOut, wantGrad) = try Self.swiftReference(x, upstream: upstream, log: log)
        // Along axis 0 of the transpose: the same rows after the move to the last axis.
        let leaf = (axis0 ? try x.transpose(0, 1).contiguousStorage() : x).requiringGrad()
        let axis = axis0 ? 0 : 1
        let out = log ? try leaf.logSoftmax(axis: axis) : try leaf.softmax(axis: axis)
        try out.backward(axis0 ? try upstream.transpose(0, 1).contiguousStorage() : upstream)
        let gotOut = axis0 ? try out.detach().transpose(0, 1) : out.detach()
        let gotGrad = axis0 ? try #require(leaf.grad).transpose(0, 1) : try #require(leaf.grad)
        let label = "\(log ? "logSoftmax" : "softmax") [\(rows), \(n)]\(axis0 ? " axis 0" : "")"
        if let m = Closeness.mismatch(gotOut, wantOut, rtol: 1e-6, atol: 1e-6, "\(label) out") { Issue.record(Comment(rawValue: m)) }
        if let m = Closeness.mismatch(gotGrad, wantGrad, rtol: 1e-6, atol: 1e-6, "\(label) grad") { Issue.record(Comment(rawValue: m)) }
    }

    @Test(arguments: [(8, 1000), (500, 10), (5000, 1)])
    func agreesWithSwiftKernels(rows: Int, n: Int) throws {
        try check(rows: rows, n: n, log: true)
        try check(rows: rows, n: n, log: false)
    }

    @Test func agreesAlongAnInnerAxis() throws {
        try check(rows: 40, n: 300, log: true, axis0: true)
        try check(rows: 40, n: 300, log: false, axis0: true)
    }

    /// Log-softmax of a [256, 1000] float32 input against a float64 reference, forward and
    /// backward (which uses the kept softmax): one dominant element per row (y near 0, where a
    /// plain float sum of exps loses 1e-6), rows far from 0 (large log-sums; sums out of float range, the shifted exp) and
    /// without graph (no softmax kept). Error at most 2e-6 relative to 1 + |y|.
    @Test(arguments: [false, true])
    func logSoftmaxMatchesFloat64(largeMaxima: Bool) throws {
        let rows = 256, n = 1000
        var x = Tensor.randn([rows, n], dtype: .float32, generator: Generator(seed: 11)).toFloatArray()
        for r in 0..<rows {
            x[r * n + (r * 37) % n] = 12 + Float(r % 50) * 0.5
            guard largeMaxima else { continue }
            // Every third row overflows or underflows the unshifted sum (the shifted exp), some
            // others pass 1e30 (shifted too, keeping the softmax's scale normal), the rest lie
            // far from 0 within the unshifted range (large log-sums, y from x − L − ℓ).
            let shift: Float = r % 3 == 0 ? (r % 2 == 0 ? 90 : -300) : (r % 3 == 1 ? (r % 2 == 0 ? 20 : 45) : -60)
            for j in 0..<n { x[r * n + j] = x[r * n + j] * (r % 3 == 0 ? 4 : 1) + shift }
        }
        let g = Tensor.randn([rows, n], dtype: .float32, generator: Generator(seed: 12)).toFloatArray()
        var wantY = [Double](repeating: 0, count: rows * n), wantGrad = wantY
        for r in 0..<rows {
            let row = x[(r * n)..<(r * n + n)].map(Double.init)
            let m = row.max()!
            let logSum = Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
            let gSum = g[(r * n)..<(r * n + n)].reduce(0) { $0 + Double($1) }
            for j in 0..<n {
                wantY[r * n + j] = (row[j] - m) - logSum
                wantGrad[r * n + j] = Double(g[r * n + j]) - Foundation.exp(wantY[r * n + j]) * gSum
            }
        }
        func worst(_ got: [Float], _ want: [Double]) -> Double {
            zip(got, want).map { Swift.abs(Double($0) - $1) / (1 + Swift.abs($1)) }.max()!
        }
        let plain = try Tensor.withNoGrad { try Tensor(x, shape: [rows, n]).logSoftmax(axis: 1) }
        #expect(worst(plain.toFloatArray(), wantY) <= 2e-6)
        let leaf = Tensor(x, shape: [rows, n]).requiringGrad()
        let y = try leaf.logSoftmax(axis: 1)
        try y.backward(Tensor(g, shape: [rows, n]))
        #expect(worst(y.toFloatArray(), wantY) <= 2e-6)
        #expect(worst(try #require(leaf.grad).toFloatArray(), wantGrad) <= 2e-6)
    }

    /// Reports whether oneDNN runs the primitives here (elsewhere the tests above compare
    /// the Swift kernels with themselves).
    @Test func reportsWhetherOneDNNRunsSoftmax() {
        var x = [Float](repeating: 1, count: 8 * 1000), y = [Float](repeating: 0, count: 8 * 1000)
        let ran = x.withUnsafeMutableBytes { px in y.withUnsafeMutableBytes { py in
            DNNLSoftmax.forward(px.baseAddress!, py.baseAddress!, rows: 8, n: 1000, log: true)
        } }
        print("oneDNN log-softmax available: \(ran)")
        if ran { #expect(y.allSatisfy { Swift.abs($0 + Float(Foundation.log(1000.0))) < 1e-5 }) }
    }
}
