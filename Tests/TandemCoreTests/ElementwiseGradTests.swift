import Foundation
import Testing
import TandemCore
import TandemTestSupport

/// Finite-difference gradient checks (float64) for elementwise and activation ops.
@Suite struct ElementwiseGradTests {
    static let g = Generator(seed: 11)

    func x(_ shape: [Int], low: Double = -2, high: Double = 2) -> Tensor {
        Tensor.uniform(shape, low: low, high: high, dtype: .float64, generator: Self.g)
    }

    func expectGrad(_ inputs: [Tensor], _ f: @escaping ([Tensor]) throws -> Tensor) throws {
        let result = try GradCheck.check(inputs, f)
        #expect(result.passed, "\(result.report)")
    }

    @Test func binaryOpsWithBroadcasting() throws {
        try expectGrad([x([2, 3]), x([3])]) { try $0[0] + $0[1] }
        try expectGrad([x([2, 1, 3]), x([4, 1])]) { try $0[0] - $0[1] }
        try expectGrad([x([2, 3]), x([2, 1])]) { try $0[0] * $0[1] }
        try expectGrad([x([2, 3]), x([3], low: 0.5, high: 2)]) { try $0[0] / $0[1] }
        try expectGrad([x([2, 3], low: 0.5, high: 2), x([2, 3])]) { try Tensor.pow($0[0], $0[1]) }
        try expectGrad([x([3, 4]), x([4])]) { try Tensor.maximum($0[0], $0[1]) }
        try expectGrad([x([3, 4]), x([3, 1])]) { try Tensor.minimum($0[0], $0[1]) }
    }

    @Test func scalarOps() throws {
        try expectGrad([x([5])]) { try 3 * $0[0] + 1 }
        try expectGrad([x([5], low: 0.5, high: 2)]) { try 2 / $0[0] - 1 }
        try expectGrad([x([5])]) { try $0[0].pow(3) }
        try expectGrad([x([5])]) { try $0[0].pow(2) }
    }

    @Test func unaryOps() throws {
        try expectGrad([x([6])]) { try -$0[0] }
        try expectGrad([x([6])]) { try $0[0].exp() }
        try expectGrad([x([6], low: 0.2, high: 3)]) { try $0[0].log() }
        try expectGrad([x([6], low: 0.2, high: 3)]) { try $0[0].sqrt() }
        try expectGrad([x([6], low: 0.2, high: 3)]) { try $0[0].rsqrt() }
        try expectGrad([x([6], low: 0.2, high: 3)]) { try $0[0].abs() }
        try expectGrad([x([6])]) { try $0[0].sign() }
        try expectGrad([x([6], low: -0.5, high: 3)]) { try $0[0].log1p() }
        try expectGrad([x([6])]) { try $0[0].expm1() }
        try expectGrad([Tensor([-2, -0.5, 0.3, 1.5, 2.5], dtype: .float64)]) { try $0[0].clamp(min: -1, max: 2) }
    }

    @Test func activations() throws {
        let input = Tensor([-3, -1.2, -0.3, 0.4, 1.1, 2.7], dtype: .float64)
        try expectGrad([input]) { try $0[0].relu() }
        try expectGrad([input]) { try $0[0].sigmoid() }
        try expectGrad([input]) { try $0[0].tanh() }
        try expectGrad([input]) { try $0[0].silu() }
        try expectGrad([input]) { try $0[0].gelu() }
        try expectGrad([input]) { try $0[0].gelu(approximate: .tanh) }
        try expectGrad([input]) { try $0[0].softplus() }
        try expectGrad([input]) { try $0[0].softplus(beta: 2, threshold: 3) }
    }

    @Test func whereAndMaskedFill() throws {
        let mask = Tensor([1, 0, 1, 0, 0, 1], shape: [2, 3], dtype: .bool)
        try expectGrad([x([2, 3]), x([3])]) { try Tensor.where(mask, $0[0], $0[1]) }
        try expectGrad([x([2, 3])]) { try $0[0].maskedFill(mask, -5) }
    }

    @Test func shapeMismatchNamesBothShapes() {
        #expect {
            try Tensor.zeros([2, 3]) + Tensor.zeros([4])
        } throws: { error in
            "\(error)".contains("[2, 3]") && "\(error)".contains("[4]") && "\(error)".contains("add")
        }
        #expect(throws: TensorError.self) { try Tensor.zeros([2], dtype: .int64).exp() }
        #expect(throws: TensorError.self) { try Tensor.zeros([2]) * Tensor.zeros([2], dtype: .float64) }
    }

    @Test func comparisonsGiveBool() throws {
        let a = Tensor([1, 2, 3] as [Float]), b = Tensor([3, 2, 1] as [Float])
        #expect(try a.lt(b).toIntArray() == [1, 0, 0])
        #expect(try a.eq(b).dtype == .bool)
        #expect(try a.ge(b).toIntArray() == [0, 1, 1])
        #expect(try Tensor(int64: [1, 2]).eq(Tensor(int64: [1, 5])).toIntArray() == [1, 0])
    }

    @Test func fastExpMatchesLibm() throws {
        let values: [Float] = [-200, -104, -103, -87.5, -20, -1e-3, 0, 1e-3, 1, 10, 50, 88.5, 89, .infinity, -.infinity]
        let out = try Tensor(values).exp().toFloatArray()
        for (v, y) in zip(values, out) {
            let expected = Float(Foundation.exp(Double(v)))
            if expected.isInfinite || expected == 0 {
                #expect(y == expected || Swift.abs(y) < Float.leastNormalMagnitude, "exp(\(v)) = \(y)")
            } else {
                #expect(Swift.abs(y - expected) <= 2e-7 * Swift.abs(expected) + Float.leastNormalMagnitude, "exp(\(v)) = \(y), expected \(expected)")
            }
        }
        #expect(try Tensor([Float.nan]).exp().toFloatArray()[0].isNaN)
    }
}
