import TandemNN

extension KANLinear {
    /// Every edge's activation `φ_ji(x_i)` on `x [N, in]`: `[N, out, in]` (differentiable).
    public func edgeActivations(_ x: Tensor) throws -> Tensor {
        try checkInput(x, op: "edgeActivations")
        let base = try x.silu().unsqueeze(1) * baseWeight.value                         // [N, out, in]
        let bases = try Tensor.bSplineBases(x, grid: grid.value, order: splineOrder).permute([1, 0, 2]).contiguous()
        let coeff = try scaledSplineWeight().permute([1, 2, 0]).contiguous()             // [in, C, out]
        let spline = try Tensor.bmm(bases, coeff).permute([1, 2, 0])                     // [N, out, in]
        return try base + spline
    }

    /// A copy restricted to the given output rows and/or input columns (nil keeps all), with the
    /// same grid and order. Used by pruning.
    public func selecting(outputs: [Int]?, inputs: [Int]?) throws -> KANLinear {
        let outIdx = Tensor(int64: outputs ?? Array(0..<outFeatures)), inIdx = Tensor(int64: inputs ?? Array(0..<inFeatures))
        let copy = KANLinear(inIdx.count, outIdx.count, gridSize: gridSize, splineOrder: splineOrder, gridEps: gridEps,
                             generator: Generator(seed: 0))
        try Tensor.withNoGrad {
            func pick(_ t: Tensor) throws -> Tensor {
                try t.detach().indexSelect(axis: 0, index: outIdx).indexSelect(axis: 1, index: inIdx)
            }
            try copy.baseWeight.value.copyValues(from: pick(baseWeight.value))
            try copy.splineWeight.value.copyValues(from: pick(splineWeight.value))
            try copy.splineScaler.value.copyValues(from: pick(splineScaler.value))
            copy.grid.value = try grid.value.indexSelect(axis: 0, index: inIdx).contiguous()
        }
        copy.isTraining = isTraining
        return copy
    }
}
