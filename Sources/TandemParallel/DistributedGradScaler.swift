import TandemDistributed
import TandemNN
import TandemOptim

extension GradScaler {
    /// A `GradScaler` whose inf/NaN decision is all-reduced (max) over `processGroup`, so that
    /// every rank skips the same steps and keeps the same scale (replicas never diverge).
    /// With DDP the gradients are already averaged, so an overflow on one rank reaches all;
    /// the extra all-reduce (one float per step) also covers gradients DDP does not touch.
    /// Every rank must call `unscale`/`step` for the same optimizers in the same order.
    public convenience init(initScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5,
                            growthInterval: Int = 2000, enabled: Bool = true, processGroup: any ProcessGroup) throws {
        try self.init(initScale: initScale, growthFactor: growthFactor, backoffFactor: backoffFactor,
                      growthInterval: growthInterval, enabled: enabled,
                      foundInfReducer: processGroup.worldSize == 1 ? nil : { found in
                          let flag = Tensor([found ? 1 : 0], shape: [1], dtype: .float32)
                          return try processGroup.allReduce(flag, op: .max).item() > 0
                      })
    }
}
