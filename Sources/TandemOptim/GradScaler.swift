import TandemNN

/// Dynamic loss scaling for float16 mixed precision (`torch.amp.GradScaler`).
///
/// One training step:
/// ```swift
/// let loss = try autocast(dtype: .float16) { try model(x) ... }
/// try scaler.scale(loss).backward()
/// try scaler.unscale(optimizer)                 // optional, e.g. before clipping
/// try ClipGrad.clipGradNorm(optimizer.parameters, maxNorm: 1)
/// try scaler.step(optimizer)                    // skipped if a gradient is inf/NaN
/// scaler.update()
/// ```
/// The loss is multiplied by `scale` so that small float16 gradients do not flush to zero;
/// `unscale` divides the gradients by it again and looks for inf/NaN. A step with
/// non-finite gradients is skipped and the scale multiplied by `backoffFactor`; after
/// `growthInterval` finite steps in a row it is multiplied by `growthFactor`.
///
/// Under data parallelism pass `foundInfReducer` (or use the `processGroup:` initialiser
/// in TandemParallel): every rank then skips or steps alike and keeps the same scale.
/// bfloat16 has float32's range and needs no scaler (as in PyTorch).
public final class GradScaler {
    /// The current loss scale (the float32 value PyTorch keeps).
    public private(set) var scale: Double
    /// Multiplies `scale` after `growthInterval` consecutive finite steps (> 1).
    public let growthFactor: Double
    /// Multiplies `scale` after a step with inf/NaN gradients (in (0, 1)).
    public let backoffFactor: Double
    /// Consecutive finite steps before the scale grows.
    public let growthInterval: Int
    /// When false, every method is a pass-through: `scale(loss)` returns `loss`, `step` steps.
    public let isEnabled: Bool
    /// Finite steps since the last growth or backoff.
    public private(set) var growthTracker = 0
    /// Combines this rank's "found inf/NaN" flag with the other ranks' (logical or); nil in
    /// a single process.
    public let foundInfReducer: ((Bool) throws -> Bool)?

    /// Per optimizer, since the last `update()`: unscaled already, and whether inf/NaN was found.
    private var unscaled: [ObjectIdentifier: Bool] = [:]

    /// - Parameters: PyTorch's defaults. `foundInfReducer` maps the local flag to the global one.
    /// - Throws: `TensorError.invalidArgument` for a non-positive scale or interval, a growth
    ///   factor ≤ 1 or a backoff factor outside (0, 1).
    public init(initScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5,
                growthInterval: Int = 2000, enabled: Bool = true,
                foundInfReducer: ((Bool) throws -> Bool)? = nil) throws {
        guard initScale > 0, initScale.isFinite, growthFactor > 1, backoffFactor > 0, backoffFactor < 1, growthInterval > 0 else {
            throw TensorError.invalidArgument(
                op: "GradScaler",
                message: "needs initScale > 0, growthFactor > 1, 0 < backoffFactor < 1, growthInterval > 0; got \(initScale), \(growthFactor), \(backoffFactor), \(growthInterval)")
        }
        self.scale = initScale
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
        self.isEnabled = enabled
        self.foundInfReducer = foundInfReducer
    }

    /// `loss · scale` (differentiable), or `loss` itself when disabled. Any shape.
    public func scale(_ loss: Tensor) throws -> Tensor {
        guard isEnabled else { return loss }
        return try loss * loss.scalarLikeForScaler(Double(Float(scale)))
    }

    /// Divides the gradients of `optimizer`'s parameters by the scale in place and records
    /// whether any is inf or NaN (all-reduced over ranks with `foundInfReducer`). Idempotent
    /// until the next `update()`: a second call does nothing. Returns the (global) flag.
    @discardableResult
    public func unscale(_ optimizer: any Optimizer) throws -> Bool {
        guard isEnabled else { return false }
        let id = ObjectIdentifier(optimizer)
        if let found = unscaled[id] { return found }
        let inverse = Double(1 / Float(scale))  // float32 reciprocal, as PyTorch computes it
        var found = false
        try Tensor.withNoGrad {
            for p in optimizer.parameters {
                guard let g = p.grad else { continue }
                let u = try g * g.scalarLikeForScaler(inverse)
                if !found, !u.isAllFinite() { found = true }
                try p.value.setGrad(u)
            }
        }
        if let foundInfReducer { found = try foundInfReducer(found) }
        unscaled[id] = found
        return found
    }

    /// Unscales (if not done yet) and runs `optimizer.step()` unless a gradient was inf/NaN.
    /// Returns true when the optimizer stepped.
    @discardableResult
    public func step(_ optimizer: any Optimizer) throws -> Bool {
        guard isEnabled else { try optimizer.step(); return true }
        if try unscale(optimizer) { return false }
        try optimizer.step()
        return true
    }

    /// Adapts the scale after a step: backoff if any optimizer found inf/NaN since the last
    /// update, growth after `growthInterval` finite steps. Without any `unscale`/`step` since
    /// the last update (nothing to judge), only the bookkeeping is reset.
    public func update() {
        guard isEnabled else { return }
        defer { unscaled = [:] }
        guard !unscaled.isEmpty else { return }
        if unscaled.values.contains(true) {
            scale *= backoffFactor
            growthTracker = 0
        } else {
            growthTracker += 1
            if growthTracker == growthInterval {
                scale *= growthFactor
                growthTracker = 0
            }
        }
        scale = Double(Float(scale))  // PyTorch keeps the scale as a float32 tensor
    }

    /// Sets the scale directly (`update(new_scale)`), resetting the growth tracker.
    public func update(newScale: Double) {
        precondition(newScale > 0 && newScale.isFinite, "GradScaler.update(newScale:): needs a positive finite scale")
        scale = newScale
        growthTracker = 0
        unscaled = [:]
    }

    /// The state for checkpoints, with PyTorch's names: `scale`, `growth_factor`,
    /// `backoff_factor` (float64 `[1]`), `growth_interval`, `_growth_tracker` (int64 `[1]`).
    /// Empty when disabled, as in PyTorch.
    public func stateDict() -> [(String, Tensor)] {
        guard isEnabled else { return [] }
        return [("scale", Tensor([scale], shape: [1], dtype: .float64)),
                ("growth_factor", Tensor([growthFactor], shape: [1], dtype: .float64)),
                ("backoff_factor", Tensor([backoffFactor], shape: [1], dtype: .float64)),
                ("growth_interval", Tensor(int64: [growthInterval])),
                ("_growth_tracker", Tensor(int64: [growthTracker]))]
    }

    /// Restores `scale` and the growth tracker saved by `stateDict()`. The factors and the
    /// interval are construction arguments and stay as constructed.
    /// - Throws: `TensorError.invalidArgument` if `scale` is missing or not positive.
    public func loadStateDict(_ state: [String: Tensor]) throws {
        guard let s = state["scale"], let value = try? s.item(), value > 0, value.isFinite else {
            throw TensorError.invalidArgument(op: "GradScaler.loadStateDict", message: "the state has no positive finite 'scale'")
        }
        scale = value
        growthTracker = try state["_growth_tracker"].map { Int(try $0.item()) } ?? 0
        unscaled = [:]
    }
}

extension Tensor {
    fileprivate func scalarLikeForScaler(_ value: Double) -> Tensor { Tensor.scalar(value, dtype: dtype) }
}
