import Foundation
import TandemNN

/// Mamba's gated RMSNorm (`RMSNormGated` with `norm_before_gate=False`): the input is gated
/// first, `g = x · silu(z)`, then each group of `groupSize` channels is RMS-normalised,
/// `g / √(mean(g²) + eps)`, and scaled by `weight`. `x, z [..., dim]` → `[..., dim]`.
/// Parameter `weight [dim]` (initialised to ones).
public final class GatedRMSNorm: Module {
    /// Per-channel scale `[dim]`.
    public let weight: Parameter
    /// Channels normalised together (`dim` divisible by it).
    public let groupSize: Int
    /// Added to the mean square.
    public let eps: Double
    /// Training mode (the layer behaves the same in both modes).
    public var isTraining = true

    /// A norm over `dim` channels in groups of `groupSize` (default: one group).
    public init(_ dim: Int, groupSize: Int? = nil, eps: Double = 1e-5) {
        weight = Parameter(Tensor.ones([dim]))
        self.groupSize = groupSize ?? dim
        self.eps = eps
        precondition(self.groupSize > 0 && dim % self.groupSize == 0, "GatedRMSNorm: dim \(dim) is not divisible by groupSize \(self.groupSize)")
    }

    /// `weight`.
    public var localParameters: [(String, Parameter)] { [("weight", weight)] }

    /// Ungated: `x [..., dim]` → `[..., dim]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try callAsFunction(input, gate: nil) }

    /// `norm(x · silu(gate)) · weight`: `x`, `gate [..., dim]` → `[..., dim]`.
    public func callAsFunction(_ x: Tensor, gate: Tensor?) throws -> Tensor {
        let dim = weight.shape[0]
        guard x.rank >= 1, x.shape[x.rank - 1] == dim, gate.map({ $0.shape == x.shape }) ?? true else {
            throw TensorError.shapeMismatch(op: "GatedRMSNorm", message: "expects x and gate [..., \(dim)], got \(x.shape) and \(gate?.shape ?? [])")
        }
        let g = try gate.map { try x * $0.silu() } ?? x
        let grouped = try g.reshape(Array(x.shape.dropLast()) + [dim / groupSize, groupSize])
        let normed = try Tensor.rmsNorm(grouped, normalizedShape: [groupSize], weight: nil, eps: eps)
        return try normed.reshape(x.shape) * weight.value
    }
}

/// The Mamba-2 mixer (state-spaces/mamba `Mamba2`, the reference path without bias, with
/// `rmsnorm=True`, `norm_before_gate=False`): `u [batch, length, dModel]` → `[batch, length, dModel]`.
///
/// `in_proj(u)` splits into `z [dInner]`, `xBC [dInner + 2·ngroups·dState]` and `dt [nheads]`;
/// `xBC` goes through a causal depthwise conv1d (kernel `dConv`) and SiLU and splits into
/// `x`, `B`, `C`; `dt = softplus(dt + dt_bias)`, `A = −exp(A_log)`; then
/// `y = ssd(x·dt, A·dt, B, C) + D·x` (head h uses group `h / (nheads/ngroups)` of B and C),
/// `out_proj(norm(y · silu(z)))`. `dInner = expand·dModel`, `nheads = dInner / headdim`.
///
/// Parameters (PyTorch names): `dt_bias`, `A_log`, `D [nheads]`,
/// `in_proj.weight [2·dInner + 2·ngroups·dState + nheads, dModel]`,
/// `conv1d.weight [convDim, 1, dConv]`, `conv1d.bias [convDim]` (`convDim = dInner + 2·ngroups·dState`),
/// `norm.weight [dInner]`, `out_proj.weight [dModel, dInner]`.
///
/// `step` runs the same block one token at a time from an `InferenceCache` (the recurrent form);
/// `callAsFunction(_:cache:)` runs the chunked form from and into a cache (prefill).
public final class Mamba2: Module {
    /// Input and output channels.
    public let dModel: Int
    /// SSM state size N.
    public let dState: Int
    /// Causal conv kernel width.
    public let dConv: Int
    /// `expand · dModel`.
    public let dInner: Int
    /// Channels per head P.
    public let headdim: Int
    /// `dInner / headdim`.
    public let nheads: Int
    /// Groups sharing B and C (nheads divisible by it).
    public let ngroups: Int
    /// SSD chunk length.
    public let chunkSize: Int
    /// Channels through the conv: `dInner + 2·ngroups·dState`.
    public var convDim: Int { dInner + 2 * ngroups * dState }

    /// `dModel → 2·dInner + 2·ngroups·dState + nheads`, no bias.
    public let inProj: Linear
    /// Depthwise causal conv over `convDim` channels (kernel `dConv`, padding `dConv − 1`, bias).
    public let conv1d: Conv1d
    /// `[nheads]`: softplus⁻¹ of the initial step sizes.
    public let dtBias: Parameter
    /// `[nheads]`: log of the decay rates, `A = −exp(A_log)`.
    public let aLog: Parameter
    /// `[nheads]`: skip weights.
    public let d: Parameter
    /// Gated RMSNorm over `dInner` in groups of `dInner / ngroups`, eps 1e-5.
    public let norm: GatedRMSNorm
    /// `dInner → dModel`, no bias.
    public let outProj: Linear
    /// Training mode (the block behaves the same in both modes).
    public var isTraining = true

    /// A block initialised like the reference: Linear/Conv1d defaults, `A_log = log U(aInitRange)`,
    /// `dt = exp(U(log dtMin, log dtMax))` floored at `dtInitFloor`, `dt_bias = softplus⁻¹(dt)`,
    /// `D = 1`, `norm.weight = 1`. `expand·dModel` must be divisible by `headdim`, and `nheads` by `ngroups`.
    public init(dModel: Int, dState: Int = 128, dConv: Int = 4, expand: Int = 2, headdim: Int = 64,
                ngroups: Int = 1, chunkSize: Int = 256, dtMin: Double = 0.001, dtMax: Double = 0.1,
                dtInitFloor: Double = 1e-4, aInitRange: ClosedRange<Double> = 1...16, generator: Generator = .default) {
        self.dModel = dModel
        self.dState = dState
        self.dConv = dConv
        dInner = expand * dModel
        self.headdim = headdim
        precondition(headdim > 0 && dInner % headdim == 0, "Mamba2: dInner \(expand * dModel) is not divisible by headdim \(headdim)")
        nheads = dInner / headdim
        precondition(ngroups > 0 && nheads % ngroups == 0, "Mamba2: nheads \(nheads) is not divisible by ngroups \(ngroups)")
        precondition(dConv >= 1 && chunkSize >= 1, "Mamba2: dConv and chunkSize must be positive")
        self.ngroups = ngroups
        self.chunkSize = chunkSize
        let convDim = dInner + 2 * ngroups * dState
        inProj = Linear(dModel, 2 * dInner + 2 * ngroups * dState + nheads, bias: false, generator: generator)
        conv1d = Conv1d(convDim, convDim, kernelSize: dConv, padding: dConv - 1, groups: convDim, generator: generator)
        let (logMin, logMax) = (Foundation.log(dtMin), Foundation.log(dtMax))
        let dt = Tensor.uniform([nheads], low: logMin, high: logMax, dtype: .float64, generator: generator)
            .toDoubleArray().map { Swift.max(Foundation.exp($0), dtInitFloor) }
        dtBias = Parameter(Tensor(dt.map { $0 + Foundation.log(-Foundation.expm1(-$0)) }, shape: [nheads]))
        let rates = Tensor.uniform([nheads], low: aInitRange.lowerBound, high: aInitRange.upperBound, dtype: .float64,
                                   generator: generator)
        aLog = Parameter(Tensor(rates.toDoubleArray().map { Foundation.log($0) }, shape: [nheads]))
        d = Parameter(Tensor.ones([nheads]))
        norm = GatedRMSNorm(dInner, groupSize: dInner / ngroups, eps: 1e-5)
        outProj = Linear(dInner, dModel, bias: false, generator: generator)
    }

    /// `dt_bias`, `A_log`, `D` (the block's own parameters come first in PyTorch's state_dict).
    public var localParameters: [(String, Parameter)] { [("dt_bias", dtBias), ("A_log", aLog), ("D", d)] }

    /// `in_proj`, `conv1d`, `norm`, `out_proj`.
    public var children: [(String, any Module)] {
        [("in_proj", inProj), ("conv1d", conv1d), ("norm", norm), ("out_proj", outProj)]
    }

    /// The recurrent state of a block between calls.
    public struct InferenceCache {
        /// `[batch, convDim, dConv]`: the last `dConv` conv inputs (pre-activation `xBC`), oldest first.
        public var convState: Tensor
        /// `[batch, nheads, headdim, dState]`: the SSM state.
        public var ssmState: Tensor
    }

    /// An empty cache (zeros: the state before the first token) for `batchSize` sequences.
    public func makeCache(batchSize: Int, dtype: DType = .float32) -> InferenceCache {
        InferenceCache(convState: Tensor.zeros([batchSize, convDim, dConv], dtype: dtype),
                       ssmState: Tensor.zeros([batchSize, nheads, headdim, dState], dtype: dtype))
    }

    /// The block's intermediate values for one chunked forward pass.
    public struct Intermediates {
        /// `[b, l, 2·dInner + 2·ngroups·dState + nheads]`: `in_proj(u)`.
        public var zxbcdt: Tensor
        /// `[b, l, convDim]`: `silu(causal conv(xBC))` = `[x | B | C]`.
        public var xBCAct: Tensor
        /// `[b, l, nheads]`: `softplus(dt + dt_bias)`.
        public var dtSoft: Tensor
        /// `[b, l, dInner]`: SSD output plus the D skip, before gating.
        public var ySSD: Tensor
        /// `[b, l, dInner]`: `norm(y · silu(z))`, the input of `out_proj`.
        public var yNorm: Tensor
        /// `[b, l, dModel]`: the block output.
        public var output: Tensor
    }

    /// `u [batch, length, dModel]` → `[batch, length, dModel]`, starting from zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try forward(input, cache: nil).intermediates.output
    }

    /// The chunked forward pass continuing from `cache` (zero state when nil), returning the
    /// output `[batch, length, dModel]` and writing the state after the last token back into
    /// `cache` (created when nil), so that `step` can continue (prefill).
    public func callAsFunction(_ input: Tensor, cache: inout InferenceCache?) throws -> Tensor {
        let (values, next) = try forward(input, cache: cache)
        cache = next
        return values.output
    }

    /// The chunked forward pass with every intermediate value (see `Intermediates`) and the
    /// cache after the last token. `input [batch, length, dModel]`, length ≥ 1.
    public func forward(_ input: Tensor, cache: InferenceCache?) throws -> (intermediates: Intermediates, cache: InferenceCache) {
        guard input.rank == 3, input.shape[2] == dModel, input.shape[1] >= 1 else {
            throw TensorError.shapeMismatch(op: "Mamba2", message: "expects [batch, length ≥ 1, \(dModel)], got \(input.shape)")
        }
        let (bs, l) = (input.shape[0], input.shape[1])
        let start = cache ?? makeCache(batchSize: bs, dtype: input.dtype)
        try checkCache(start, batch: bs, dtype: input.dtype)
        let zxbcdt = try inProj(input)
        let parts = try zxbcdt.split(sizes: [dInner, convDim, nheads], axis: -1)
        let (z, xBC, dtRaw) = (parts[0], parts[1], parts[2])

        // Causal depthwise conv: the last dConv − 1 cached inputs (zeros at the start) in front.
        let history = try Tensor.cat([start.convState, xBC.transpose(1, 2)], axis: 2)   // [b, convDim, dConv + l]
        let convIn = try history.slice(axis: 2, start: 1)                                 // [b, convDim, dConv − 1 + l]
        let conv = try Tensor.conv1d(convIn, weight: conv1d.weight.value, bias: conv1d.bias?.value, groups: convDim)
        let xBCAct = try conv.transpose(1, 2).silu()                                      // [b, l, convDim]
        let xbc = try xBCAct.split(sizes: [dInner, ngroups * dState, ngroups * dState], axis: -1)

        let dt = try (dtRaw + dtBias.value).softplus()                                    // [b, l, H]
        let a = try -(aLog.value.exp())                                                   // [H]
        let x = try xbc[0].reshape([bs, l, nheads, headdim])
        let (bHeads, cHeads) = (try headsFromGroups(xbc[1]), try headsFromGroups(xbc[2]))
        let (y, finalState) = try ssd(x: x * dt.unsqueeze(-1), a: dt * a, b: bHeads, c: cHeads,
                                      blockLength: chunkSize, initialStates: cache?.ssmState)
        let ySSD = try (y + x * d.value.unsqueeze(-1)).reshape([bs, l, dInner])
        let yNorm = try norm(ySSD, gate: z)
        let output = try outProj(yNorm)
        let next = InferenceCache(convState: try history.slice(axis: 2, start: l), ssmState: finalState)
        return (Intermediates(zxbcdt: zxbcdt, xBCAct: xBCAct, dtSoft: dt, ySSD: ySSD, yNorm: yNorm, output: output), next)
    }

    /// One token through the recurrent form: `x [batch, dModel]` → `[batch, dModel]`, updating
    /// `cache` (conv window shifted by one, SSM state advanced one step). Equals the chunked
    /// forward pass at that position.
    public func step(_ x: Tensor, cache: inout InferenceCache) throws -> Tensor {
        guard x.rank == 2, x.shape[1] == dModel else {
            throw TensorError.shapeMismatch(op: "Mamba2.step", message: "expects [batch, \(dModel)], got \(x.shape)")
        }
        let bs = x.shape[0]
        try checkCache(cache, batch: bs, dtype: x.dtype)
        let parts = try inProj(x).split(sizes: [dInner, convDim, nheads], axis: -1)
        let (z, xBC, dtRaw) = (parts[0], parts[1], parts[2])
        let window = try Tensor.cat([cache.convState.slice(axis: 2, start: 1), xBC.unsqueeze(-1)], axis: 2) // [b, convDim, dConv]
        var conv = try (window * conv1d.weight.value.squeeze(1)).sum(axes: [-1])
        if let bias = conv1d.bias { conv = try conv + bias.value }
        let xbc = try conv.silu().split(sizes: [dInner, ngroups * dState, ngroups * dState], axis: -1)
        let dt = try (dtRaw + dtBias.value).softplus()                                    // [b, H]
        let a = try dt * -(aLog.value.exp())
        let xh = try xbc[0].reshape([bs, nheads, headdim])
        let bh = try headsFromGroups(xbc[1].unsqueeze(1)).squeeze(1)                       // [b, H, N]
        let ch = try headsFromGroups(xbc[2].unsqueeze(1)).squeeze(1)
        let (y, state) = try ssdStep(state: cache.ssmState, x: xh * dt.unsqueeze(-1), a: a, b: bh, c: ch)
        cache = InferenceCache(convState: window, ssmState: state)
        let ySkip = try (y + xh * d.value.unsqueeze(-1)).reshape([bs, dInner])
        return try outProj(norm(ySkip, gate: z))
    }

    /// `[b, l, ngroups·dState]` → `[b, l, nheads, dState]`: head h reads group `h / (nheads/ngroups)`.
    private func headsFromGroups(_ t: Tensor) throws -> Tensor {
        let (bs, l) = (t.shape[0], t.shape[1])
        return try t.reshape([bs, l, ngroups, 1, dState]).expand([bs, l, ngroups, nheads / ngroups, dState])
            .reshape([bs, l, nheads, dState])
    }

    private func checkCache(_ cache: InferenceCache, batch: Int, dtype: DType) throws {
        guard cache.convState.shape == [batch, convDim, dConv], cache.ssmState.shape == [batch, nheads, headdim, dState],
              cache.convState.dtype == dtype, cache.ssmState.dtype == dtype else {
            throw TensorError.shapeMismatch(op: "Mamba2", message: "cache holds conv \(cache.convState.shape) and ssm \(cache.ssmState.shape) states, expected [\(batch), \(convDim), \(dConv)] and [\(batch), \(nheads), \(headdim), \(dState)] \(dtype)")
        }
    }
}
