import Testing
@testable import TandemCore
import TandemNN
import TandemTestSupport

@Suite struct ConvBlocksTests {
    /// `ConvBlocks(ReLU, MaxPool2d)` pools first; values must equal ReLU then pooling bit for
    /// bit and gradients as numbers, with ties between positives, windows of only negatives, zeros,
    /// NaN and padding.
    @Test func reluBeforeMaxPoolingMatchesTheWrittenOrder() throws {
        var values = Tensor.randn([2, 3, 6, 6], generator: Generator(seed: 3)).toFloatArray()
        for i in stride(from: 0, to: values.count, by: 7) { values[i] = 0.5 }     // ties with their neighbours
        for i in stride(from: 3, to: values.count, by: 11) { values[i] = 0 }
        for i in 0..<4 { values[i] = -1 - Float(i) }                                 // a window of negatives
        values[40] = .nan
        for padding in [0, 1] {
            let model = ConvBlocks(ReLU(), MaxPool2d(kernelSize: 2, stride: padding == 0 ? 2 : 1, padding: padding))
            let a = Tensor(values, shape: [2, 3, 6, 6]).requiringGrad()
            let b = Tensor(values, shape: [2, 3, 6, 6]).requiringGrad()
            let fused = try model(a)
            let written = try b.relu().maxPool2d(kernelSize: [2], stride: [padding == 0 ? 2 : 1], padding: [padding])
            let upstream = Tensor.randn(fused.shape, generator: Generator(seed: 4))
            try fused.backward(upstream)
            try written.backward(upstream)
            #expect(fused.toFloatArray().map(\.bitPattern) == written.toFloatArray().map(\.bitPattern), "padding \(padding)")
            let ga = try #require(a.grad).toFloatArray(), gb = try #require(b.grad).toFloatArray()
            // Equal as numbers: the written order's ReLU backward gives −0 where it masks a negative upstream.
            #expect(ga == gb, "padding \(padding)")
        }
    }

    /// A wrong input shape is the pooling's typed error, as in the written order (ReLU takes any shape).
    @Test func wrongShapeIsTheTypedPoolingError() {
        let model = ConvBlocks(ReLU(), MaxPool2d(kernelSize: 2))
        #expect {
            _ = try model(Tensor.zeros([4, 4]))
        } throws: { error in
            guard case TensorError.shapeMismatch(let op, _) = error else { return false }
            return op == "maxPool2d"
        }
    }

    /// How the blocks of `convBlocksRunFusedWithTheLayersResults` are put together.
    enum BlockArrangement: CaseIterable, Sendable {
        case one, twoInOneSequential, twoChained, twoBlocksAndALinearTail
        /// Channel counts that are no multiple of oneDNN's block (whether the row fuses or not).
        case twoChainedOddChannels
    }

    /// `Conv2d, BatchNorm2d, ReLU, MaxPool2d` blocks run fused (one, two in a row, or two
    /// `ConvBlocks` through `ConvBlocks.chain`): two forward and backward passes give the
    /// outputs, gradients, running statistics and batch counts of the same layers called one by
    /// one; in eval mode both paths use the running statistics.
    @Test(arguments: BlockArrangement.allCases) func convBlocksRunFusedWithTheLayersResults(arrangement: BlockArrangement) throws {
        func layers() -> [[any Module]] {
            let g = Generator(seed: 9)
            let first: [any Module] = [Conv2d(3, 16, kernelSize: 3, padding: 1, generator: g), BatchNorm2d(16), ReLU(),
                                       MaxPool2d(kernelSize: 2)]
            let second: [any Module] = [Conv2d(16, 32, kernelSize: 3, padding: 1, generator: g), BatchNorm2d(32), ReLU(),
                                        MaxPool2d(kernelSize: 2)]
            switch arrangement {
            case .one: return [first]
            case .twoInOneSequential: return [first + second]
            case .twoChained: return [first, second]
            case .twoBlocksAndALinearTail: return [first + second + [Flatten(), Linear(32 * 2 * 2, 5, generator: g)]]
            case .twoChainedOddChannels:
                return [[Conv2d(3, 5, kernelSize: 3, padding: 1, generator: g), BatchNorm2d(5), ReLU(), MaxPool2d(kernelSize: 2)],
                        [Conv2d(5, 6, kernelSize: 3, padding: 1, generator: g), BatchNorm2d(6), ReLU(), MaxPool2d(kernelSize: 2)]]
            }
        }
        let parts = layers().map { ConvBlocks($0) }
        let reference = layers().flatMap { $0 }
        func fused(_ x: Tensor) throws -> Tensor { try ConvBlocks.chain(parts, x) }
        func oneByOne(_ x: Tensor) throws -> Tensor { try reference.reduce(x) { try $1($0) } }
        let x = Tensor.randn([4, 3, 10, 10], generator: Generator(seed: 10))
        // One fused operation for all blocks: the input and four operands per block.
        let fusedInputs: [BlockArrangement: Int] = [.one: 5, .twoInOneSequential: 9, .twoChained: 9]
        for _ in 0..<2 {
            let a = try fused(x), b = try oneByOne(x)
            #expect(Closeness.mismatch(a, b, rtol: 1e-4, atol: 1e-5, "output") == nil)
            // Two blocks run as one operation only where oneDNN's layouts chain (ISA.oneDNNChainsConvBlocks).
            if let count = fusedInputs[arrangement], count == 5 || ISA.oneDNNChainsConvBlocks {
                #expect(a.gradNode?.name == "convBatchNormReLUMaxPool" && a.gradNode?.inputs.count == count, "\(arrangement)")
            }
            try (a * a).sum().backward()
            try (b * b).sum().backward()
        }
        let fusedModel = Sequential(parts)
        let fusedParameters = parts.flatMap { $0.parameters() }, referenceParameters = reference.flatMap { $0.parameters() }
        #expect(fusedParameters.count == referenceParameters.count)
        for (i, (got, expected)) in zip(fusedParameters, referenceParameters).enumerated() {
            let ga = try #require(got.grad, "parameter \(i)"), ge = try #require(expected.grad, "parameter \(i)")
            #expect(Closeness.mismatch(ga, ge, rtol: 1e-3, atol: 2e-4, "parameter \(i)") == nil, "\(arrangement)")
        }
        let fusedState = fusedModel.stateDict().map(\.1), referenceState = reference.flatMap { $0.stateDict().map(\.1) }
        #expect(fusedState.count == referenceState.count)
        for (i, (got, expected)) in zip(fusedState, referenceState).enumerated() {
            #expect(Closeness.mismatch(got, expected, rtol: 1e-4, atol: 1e-5, "state \(i)") == nil, "\(arrangement)")
        }
        #expect(fusedModel.stateDict().filter { $0.0.hasSuffix("num_batches_tracked") }.allSatisfy { (try? $0.1.item()) == 2 })
        fusedModel.eval()
        for layer in reference { layer.train(false) }
        let b = try oneByOne(x)
        #expect(Closeness.mismatch(try fused(x), b, rtol: 1e-4, atol: 1e-5, "eval output") == nil)
        let evaluated = try Tensor.withNoGrad { try fused(x) }  // the fused inference path
        #expect(Closeness.mismatch(evaluated, b, rtol: 1e-4, atol: 1e-5, "eval output without gradients") == nil)
    }

    /// A wrong input for a block that would run fused is the convolution's typed error, as when
    /// the layers run one by one, in training and in evaluation without gradients.
    @Test func convBlockWithWrongInputIsTheConvolutionsTypedError() throws {
        let model = ConvBlocks(Conv2d(3, 8, kernelSize: 3), BatchNorm2d(8), ReLU(), MaxPool2d(kernelSize: 2))
        func isConvShapeError(_ error: any Error) -> Bool {
            guard case TensorError.shapeMismatch(let op, _) = error else { return false }
            return op == "conv2d"
        }
        #expect(performing: { _ = try model(Tensor.randn([2, 4, 8, 8])) }, throws: isConvShapeError)
        #expect(performing: { _ = try model(Tensor.randn([2, 3, 8])) }, throws: isConvShapeError)
        model.eval()
        #expect(performing: { _ = try Tensor.withNoGrad { try model(Tensor.randn([2, 4, 8, 8])) } }, throws: isConvShapeError)
    }

    /// A wrong input for blocks chained across `ConvBlocks` is the first convolution's typed
    /// error, in training and in evaluation without gradients.
    @Test func chainedBlocksWithWrongInputIsTheConvolutionsTypedError() throws {
        let parts = [ConvBlocks(Conv2d(3, 16, kernelSize: 3), BatchNorm2d(16), ReLU(), MaxPool2d(kernelSize: 2)),
                     ConvBlocks(Conv2d(16, 16, kernelSize: 3), BatchNorm2d(16), ReLU(), MaxPool2d(kernelSize: 2))]
        func isConvShapeError(_ error: any Error) -> Bool {
            guard case TensorError.shapeMismatch(let op, _) = error else { return false }
            return op == "conv2d"
        }
        #expect(performing: { _ = try ConvBlocks.chain(parts, Tensor.randn([2, 4, 16, 16])) }, throws: isConvShapeError)
        #expect(performing: { _ = try ConvBlocks.chain(parts, Tensor.randn([2, 3, 16])) }, throws: isConvShapeError)
        for part in parts { part.eval() }
        #expect(performing: { _ = try Tensor.withNoGrad { try ConvBlocks.chain(parts, Tensor.randn([2, 4, 16, 16])) } },
                throws: isConvShapeError)
    }

    /// A NaN in the input shows in the output of a block that would run fused, in training and
    /// in evaluation, as with the layers one by one (oneDNN's fused ReLU would make it 0).
    @Test func convBlockKeepsNaN() throws {
        let model = ConvBlocks(Conv2d(3, 8, kernelSize: 3), BatchNorm2d(8), ReLU(), MaxPool2d(kernelSize: 2))
        var values = Tensor.randn([2, 3, 8, 8], generator: Generator(seed: 9)).toFloatArray()
        values[20] = .nan
        let x = Tensor(values, shape: [2, 3, 8, 8])
        model.eval()
        let evaluated = try Tensor.withNoGrad { try model(x) }.toFloatArray()
        #expect(evaluated.contains(where: \.isNaN) && !evaluated.allSatisfy(\.isNaN), "evaluation: only the windows that saw it")
        model.train()
        #expect(try model(x).toFloatArray().allSatisfy(\.isNaN), "training: the batch statistics are NaN")
    }

    /// Finite differences through `ConvBlocks(ReLU, MaxPool2d)` (inputs away from 0 and ties).
    @Test func reluThenMaxPoolingGradientCheck() throws {
        let x = Tensor.randn([1, 2, 4, 4], dtype: .float64, generator: Generator(seed: 5))
        let model = ConvBlocks(ReLU(), MaxPool2d(kernelSize: 2))
        let result = try GradCheck.check([x]) { xs in try model(xs[0]) }
        #expect(result.passed, "\(result)")
    }

    /// The fusion pass swaps a `Sequential` of whole blocks for `ConvBlocks` with the same
    /// layers: the state-dict names and the outputs stay; a plain `Sequential` runs its layers
    /// one by one (no fused node).
    @Test func fusionPassKeepsNamesAndValues() throws {
        final class Net: Module, ReplaceableChildren {
            var features: any Module
            let head = Linear(8 * 4 * 4, 3, generator: Generator(seed: 2))
            var isTraining = true
            init() {
                let g = Generator(seed: 1)
                features = Sequential(Conv2d(3, 8, kernelSize: 3, padding: 1, generator: g), BatchNorm2d(8), ReLU(), MaxPool2d(kernelSize: 2))
            }
            var children: [(String, any Module)] { [("features", features), ("head", head)] }
            func replaceChild(named name: String, with module: any Module) { if name == "features" { features = module } }
            func callAsFunction(_ x: Tensor) throws -> Tensor { try head(features(x).flatten(start: 1)) }
        }
        let net = Net()
        let x = Tensor.randn([2, 3, 8, 8], generator: Generator(seed: 3))
        let names = net.stateDict().map(\.0)
        #expect(try net.features(x).gradNode?.name != "convBatchNormReLUMaxPool")
        net.eval()
        let plain = try Tensor.withNoGrad { try net.features(x) }
        #expect(fuseConvBlocks(in: net) == 1)
        #expect(net.features is ConvBlocks)
        #expect(net.stateDict().map(\.0) == names)
        let fused = try Tensor.withNoGrad { try net.features(x) }
        #expect(Closeness.mismatch(fused, plain, rtol: 1e-4, atol: 1e-5, "eval output") == nil)
        net.train()
        #expect(try net.features(x).gradNode?.name == "convBatchNormReLUMaxPool")
    }
}
