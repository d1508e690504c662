import Testing
import TandemCore
import TandemTestSupport

@Suite struct AutogradTests {
    @Test func reuseAccumulates() throws {
        let x = Tensor([2, 3] as [Float]).requiringGrad()
        let y = try (x * x + x).sum()   // dy/dx = 2x + 1
        try y.backward()
        #expect(x.grad?.toFloatArray() == [5, 7])
    }

    @Test func gradientsAccumulateAcrossBackwardCalls() throws {
        let x = Tensor([1, 2] as [Float]).requiringGrad()
        try (x * 3).sum().backward()
        try (x * 3).sum().backward()
        #expect(x.grad?.toFloatArray() == [6, 6])
        x.zeroGrad()
        #expect(x.grad == nil)
    }

    @Test func retainGraph() throws {
        let x = Tensor([1, 2] as [Float]).requiringGrad()
        let y = try (x.exp() * 2).sum()
        try y.backward(retainGraph: true)
        try y.backward()
        #expect(throws: TensorError.self) { try y.backward() }
    }

    @Test func noGradAndDetach() throws {
        let x = Tensor([1, 2] as [Float]).requiringGrad()
        let y = try Tensor.withNoGrad { try x * 2 }
        #expect(!y.requiresGrad)
        #expect(!(try x.detach() * 2).requiresGrad)
        #expect(throws: TensorError.self) { try y.sum().backward() }
    }

    @Test func nonScalarNeedsGradient() throws {
        let x = Tensor([1, 2] as [Float]).requiringGrad()
        let y = try x * 2
        #expect(throws: TensorError.self) { try y.backward() }
        try y.backward(Tensor([1, 1] as [Float]))
        #expect(x.grad?.toFloatArray() == [2, 2])
    }

    @Test func leafHooksFireOnceWhenGradientIsComplete() throws {
        let w = Tensor([1, 1] as [Float]).requiringGrad()
        var seen: [[Float]] = []
        try w.registerHook { seen.append($0.toFloatArray()) }
        // w is used by three ops; the hook must see the total, once.
        let y = try (w * 2 + w * 3 + w.exp()).sum()
        try y.backward()
        #expect(seen.count == 1)
        #expect(Swift.abs(seen[0][0] - Float(5 + 2.718281828)) < 1e-5)
    }

    @Test func deepGraphDoesNotOverflowTheStack() throws {
        let x = Tensor([1] as [Float]).requiringGrad()
        var y = x
        for _ in 0..<20_000 { y = try y + 0 }
        try y.sum().backward()
        #expect(x.grad?.toFloatArray() == [1])
    }

    @Test func branchWithoutGradientStillReleasesInputs() throws {
        // The slice of `a` that is unused gets no gradient; `x` must still be reached.
        let x = Tensor([1, 2, 3] as [Float]).requiringGrad()
        let a = try x * 2
        let unused = try a.slice(axis: 0, start: 0, end: 1)
        _ = unused
        let y = try (a.slice(axis: 0, start: 1) * x.slice(axis: 0, start: 1)).sum()
        try y.backward()
        #expect(x.grad?.toFloatArray() == [0, 8, 12])
    }
}

@Suite struct GraphQueryTests {
    @Test func reachableLeaves() throws {
        let a = Tensor([1] as [Float]).requiringGrad(), b = Tensor([2] as [Float]).requiringGrad()
        let c = Tensor([3] as [Float]).requiringGrad()
        let y = try a * b + 1
        let ids = y.reachableLeafIDs()
        #expect(ids.contains(a.leafID!) && ids.contains(b.leafID!) && !ids.contains(c.leafID!))
        #expect(a.leafID == a.detach().requiringGrad().leafID ? false : true)
        #expect(Tensor([1] as [Float]).leafID == nil)
    }
}
