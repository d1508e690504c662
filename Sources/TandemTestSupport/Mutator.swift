/// Deterministic random inputs for fuzz tests: random buffers, and valid ones with a few bytes
/// changed, inserted or removed.
public struct Mutator {
    private var state: UInt64

    /// A generator whose sequence depends only on `seed`.
    public init(seed: UInt64) { state = seed }

    /// A number in `0..<bound` (0 when `bound` ≤ 1).
    public mutating func next(_ bound: Int) -> Int {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int(state >> 33) % Swift.max(bound, 1)
    }

    /// Every `randomEvery`-th round a random buffer of fewer than `randomLength` bytes, else
    /// `bytes` with up to `edits` changes (a byte changed, inserted or removed); `alphabet`, when
    /// given, adds edits that write one of its bytes (past `protectedPrefix` bytes), to reach
    /// the paths of text formats.
    public mutating func mutate(_ bytes: [UInt8], round: Int, randomEvery: Int = 4, randomLength: Int = 64, edits: Int = 4,
                                alphabet: [UInt8] = [], protectedPrefix: Int = 0) -> [UInt8] {
        if round % randomEvery == 0 { return (0..<next(randomLength)).map { _ in UInt8(next(256)) } }
        var out = bytes
        for _ in 0...next(edits) {
            switch next(alphabet.isEmpty ? 3 : 4) {
            case 0 where !out.isEmpty: out[next(out.count)] = UInt8(next(256))
            case 1: out.insert(UInt8(next(256)), at: next(out.count + 1))
            case 2 where !out.isEmpty: out.remove(at: next(out.count))
            case 3 where out.count > protectedPrefix: out[protectedPrefix + next(out.count - protectedPrefix)] = alphabet[next(alphabet.count)]
            default: break
            }
        }
        return out
    }
}
