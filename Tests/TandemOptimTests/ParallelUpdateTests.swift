import Testing
import TandemNN
import TandemOptim
import TandemTestSupport

/// Updates of parameters large enough to be split over the intra-op threads.
@Suite struct ParallelUpdateTests {
    /// One parameter of 96,000 elements (split over the threads) steps exactly like the same
    /// values held as 96 parameters of 1,000 (each too small to split), bit for bit.
    @Test(arguments: ["sgd", "sgd_nesterov", "adam_amsgrad", "adamw"])
    func largeParameterMatchesSmallOnes(name: String) throws {
        func make(_ ps: [Parameter]) throws -> any Optimizer {
            switch name {
            case "sgd": return try SGD(ps, lr: 0.1)
            case "sgd_nesterov": return try SGD(ps, lr: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true)
            case "adam_amsgrad": return try Adam(ps, lr: 0.01, weightDecay: 0.01, amsgrad: true)
            default: return try Adam.adamW(ps, lr: 0.01)
            }
        }
        let (parts, size) = (96, 1_000)
        let g = Generator(seed: 5)
        func pieces(_ t: Tensor) -> [Tensor] {
            let values = t.toFloatArray()
            return (0..<parts).map { Tensor(Array(values[($0 * size)..<(($0 + 1) * size)]), shape: [size]) }
        }
        let start = Tensor.randn([parts * size], generator: g)
        let large = Parameter(start)
        let small = pieces(start).map { Parameter($0) }
        let optLarge = try make([large]), optSmall = try make(small)
        for _ in 0..<3 {
            let grad = Tensor.randn([parts * size], generator: g)
            try large.value.setGrad(grad)
            for (p, piece) in zip(small, pieces(grad)) { try p.value.setGrad(piece) }
            try optLarge.step()
            try optSmall.step()
        }
        let joined: [Float] = small.flatMap { $0.value.toFloatArray() }
        let whole: [Float] = large.value.toFloatArray()
        let differing = zip(whole, joined).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(whole.count == joined.count && differing == 0, "\(name): \(differing) of \(whole.count) elements differ")
    }
}
