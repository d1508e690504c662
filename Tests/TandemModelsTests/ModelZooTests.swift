import Testing
import TandemModels
import TandemNN

/// The zoo's new entries take MNIST images and give 10 logits.
@Suite struct ModelZooTests {
    @Test(arguments: ["kan", "mambaout-mini"])
    func mnistModelsTakeImages(name: String) throws {
        #expect(ModelZoo.names.contains(name))
        #expect(ModelZoo.defaultDataset(for: name) == "mnist")
        let model = try #require(ModelZoo.make(name, generator: Generator(seed: 0)))
        let logits = try model(Tensor.randn([3, 1, 28, 28]))
        #expect(logits.shape == [3, 10])
        try Tensor.crossEntropy(logits, target: Tensor(int64: [1, 2, 3])).backward()
        #expect(model.parameters().allSatisfy { $0.grad != nil })
    }
}
