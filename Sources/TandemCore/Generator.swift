import Foundation

/// A seedable pseudo-random generator (xoshiro256**, seeded through SplitMix64).
/// Every random op takes one, so runs are reproducible. A reference type: ops advance it.
public final class Generator: RandomNumberGenerator, @unchecked Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    /// A generator whose whole sequence is determined by `seed`.
    public init(seed: UInt64) {
        var s = seed
        func splitMix() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    /// The generator's state, for checkpoints.
    public var stateWords: [UInt64] { [state.0, state.1, state.2, state.3] }

    /// Restores a state saved from `stateWords`.
    public func restore(stateWords words: [UInt64]) throws {
        guard words.count == 4, words.contains(where: { $0 != 0 }) else {
            throw TensorError.invalidData("Generator.restore: expected 4 state words, not all zero; got \(words)")
        }
        state = (words[0], words[1], words[2], words[3])
    }

    public func next() -> UInt64 {
        let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = state.3 << 45 | state.3 >> 19
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal (Box–Muller).
    func nextNormal() -> Double {
        var u1 = nextUnit()
        while u1 <= 0 { u1 = nextUnit() }
        let u2 = nextUnit()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }

    /// The process-wide default generator (seed 0), used when an op is given none.
    nonisolated(unsafe) public static var `default` = Generator(seed: 0)

    /// Reseeds the default generator (`torch.manual_seed`).
    public static func manualSeed(_ seed: UInt64) { `default` = Generator(seed: seed) }
}
