import TandemNN

/// The keys and values a decoder has seen, per layer, for incremental decoding: layer `i` holds
/// `keys[i]`, `values[i]` as `[batch, kvHeads, length, headDim]` (after rotary embedding, for
/// LLaMA). `length` is the number of positions already processed; the next token is at
/// position `length`.
public struct KVCache {
    /// Per-layer keys `[batch, kvHeads, length, headDim]` (nil before the first token).
    public var keys: [Tensor?]
    /// Per-layer values `[batch, kvHeads, length, headDim]` (nil before the first token).
    public var values: [Tensor?]
    /// Positions processed so far.
    public var length = 0

    /// An empty cache for `layers` layers.
    public init(layers: Int) {
        keys = Array(repeating: nil, count: layers)
        values = keys
    }

    /// Layer `i`'s keys and values, with the position of the next token.
    func layer(_ i: Int) -> DecoderAttention.LayerCache { .init(keys: keys[i], values: values[i], start: length) }

    /// Keeps layer `i`'s keys and values after a forward pass.
    mutating func store(_ layer: DecoderAttention.LayerCache?, at i: Int) {
        keys[i] = layer?.keys
        values[i] = layer?.values
    }
}

/// The self-attention both decoders share, on projected `q [B, L, H·Dh]`, `k`, `v [B, L, Hkv·Dh]`
/// → `[B, L, H·Dh]`: heads split, optional rotary embedding at positions `start ..< start + L`,
/// the cache's keys and values in front (and the new ones appended to it), causal attention.
enum DecoderAttention {
    /// One layer's cached keys and values, and the position of the first new token.
    struct LayerCache {
        var keys: Tensor?, values: Tensor?
        var start: Int
    }

    static func attend(q: Tensor, k: Tensor, v: Tensor, heads: Int, kvHeads: Int, ropeTheta: Double?,
                       cache: inout LayerCache?) throws -> Tensor {
        let (b, l, width) = (q.shape[0], q.shape[1], q.shape[2])
        let headDim = width / heads
        let start = cache?.start ?? 0
        var qh = try q.reshape([b, l, heads, headDim]).permute([0, 2, 1, 3])
        var kh = try k.reshape([b, l, kvHeads, headDim]).permute([0, 2, 1, 3])
        var vh = try v.reshape([b, l, kvHeads, headDim]).permute([0, 2, 1, 3])
        if let theta = ropeTheta {
            qh = try Tensor.rotaryEmbedding(qh, start: start, theta: theta)
            kh = try Tensor.rotaryEmbedding(kh, start: start, theta: theta)
        }
        if var layer = cache {
            if let keys = layer.keys, let values = layer.values {
                kh = try Tensor.cat([keys, kh], axis: 2)
                vh = try Tensor.cat([values, vh], axis: 2)
            }
            layer.keys = kh.detach()
            layer.values = vh.detach()
            cache = layer
        }
        let out: Tensor
        if start == 0 {
            out = try Tensor.scaledDotProductAttention(qh, kh, vh, isCausal: true)
        } else if l == 1 {
            out = try Tensor.scaledDotProductAttention(qh, kh, vh)
        } else {
            // New queries at positions start ..< start + l see keys 0 ... their own position.
            let total = start + l
            var additive = [Double](repeating: -.infinity, count: l * total)
            for i in 0..<l { for j in 0...(start + i) { additive[i * total + j] = 0 } }
            out = try Tensor.scaledDotProductAttention(qh, kh, vh, mask: Tensor(additive, shape: [l, total], dtype: qh.dtype))
        }
        return try out.permute([0, 2, 1, 3]).reshape([b, l, width])
    }
}

/// A decoder layer that continues from one layer's cached keys and values (GPT-2's block, LLaMA's layer).
protocol DecoderLayer: Module {
    /// `x [B, L, width]` at positions `cache.start ...`, appending to `cache` when given.
    func forward(_ x: Tensor, cache: inout DecoderAttention.LayerCache?) throws -> Tensor
}

extension DecoderAttention {
    /// `x` through `layers`: with a cache, each layer continues from its entry and the cache moves
    /// on by `x`'s length; without one, from position 0, each layer recomputed in the backward pass
    /// when `checkpointing`.
    static func run(_ layers: [any DecoderLayer], _ x: Tensor, cache: inout KVCache?, checkpointing: Bool) throws -> Tensor {
        var x = x
        for (i, layer) in layers.enumerated() {
            if cache != nil {
                var entry: LayerCache? = cache?.layer(i)
                x = try layer.forward(x, cache: &entry)
                cache?.store(entry, at: i)
            } else if checkpointing {
                x = try Tensor.checkpoint(x) { try layer($0) }
            } else {
                x = try layer(x)
            }
        }
        cache?.length += x.shape[1]
        return x
    }
}
