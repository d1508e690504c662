import Testing
import TandemModels
import TandemNN

/// The ConvNet's gradients under bf16 autocast are close to float32's.
@Suite struct AMPGradTests {
    @Test(arguments: [DType.bfloat16, .float16])
    func convNetGradientsCloseToFloat32(dtype: DType) throws {
        let x = Tensor.randn([8, 1, 28, 28], generator: Generator(seed: 4))
        let y = Tensor(int64: [0, 1, 2, 3, 4, 5, 6, 7])
        func grads(_ amp: DType?) throws -> [(String, [Double])] {
            let model = ConvNet(generator: Generator(seed: 1))
            let loss = try amp.map { d in try autocast(dtype: d) { try Tensor.crossEntropy(model(x), target: y) } }
                ?? Tensor.crossEntropy(model(x), target: y)
            try loss.backward()
            return model.namedParameters().map { ($0.0, $0.1.grad!.toDoubleArray()) }
        }
        let g32 = try grads(nil), g16 = try grads(dtype)
        // bf16 keeps 8 significant bits, float16 11. Batch norm's backward subtracts per-channel
        // means, so the weight gradients are small sums of large terms: their relative error is
        // tens of times the rounding unit. The conv biases before batch norm get ~0 gradient.
        let tolerance = dtype == .bfloat16 ? 0.3 : 0.08
        for ((name, a), (_, b)) in zip(g32, g16) where !["layer1.0.bias", "layer2.0.bias"].contains(name) {
            let diff = zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
            let norm = a.map { $0 * $0 }.reduce(0, +).squareRoot()
            #expect(diff <= tolerance * norm, "\(name): relative error \(diff / norm)")
        }
    }
}
