import Foundation

/// A decoded CTC label sequence (blanks and repeats removed) and its score.
public struct CTCHypothesis: Equatable, Sendable {
    /// The labels, each in `0..<C` and never the blank.
    public var labels: [Int]
    /// Greedy decoding: the log-probability of the single best path. Beam search: the
    /// log-probability of the labels summed over the alignments the beam kept.
    public var logProbability: Double

    /// A hypothesis of `labels` (no blanks) scored `logProbability`.
    public init(labels: [Int], logProbability: Double) {
        self.labels = labels
        self.logProbability = logProbability
    }
}

/// CTC decoders over time-major log-probabilities `[T, N, C]`: greedy (best path) and prefix
/// beam search (Hannun et al., 2014).
extension Tensor {
    /// Greedy (best-path) decoding: the argmax class of each frame below the input length,
    /// repeats collapsed, blanks dropped.
    ///
    /// - Parameters:
    ///   - logProbs: `[T, N, C]` log-probabilities, float32 or float64 (the decoded labels are
    ///     the same for logits; the scores are then not log-probabilities).
    ///   - inputLengths: `[N]` frames per sample, each in `0...T`; nil means T for every sample.
    ///   - blank: the blank class.
    /// - Returns: `N` hypotheses; each score is `Σ_t max_c logProbs[t, n, c]`.
    /// - Throws: `TensorError` for a wrong rank or dtype, a bad blank or bad lengths.
    public static func ctcGreedyDecode(logProbs: Tensor, inputLengths: [Int]? = nil, blank: Int = 0) throws -> [CTCHypothesis] {
        let (values, _, n, c, lengths) = try ctcDecodingInput(logProbs, inputLengths, blank: blank, op: "ctcGreedyDecode")
        return (0..<n).map { b in
            var labels: [Int] = [], score = 0.0, previous = blank
            for t in 0..<lengths[b] {
                let row = (t * n + b) * c
                var best = 0
                for j in 1..<c where values[row + j] > values[row + best] { best = j }
                score += values[row + best]
                if best != blank && best != previous { labels.append(best) }
                previous = best
            }
            return CTCHypothesis(labels: labels, logProbability: score)
        }
    }

    /// Prefix beam search: keeps the `beamWidth` most probable label prefixes at each frame,
    /// each scored by the log-sum of its paths ending in blank and in a label.
    ///
    /// - Parameters:
    ///   - logProbs: `[T, N, C]` log-probabilities (normalised over C), float32 or float64.
    ///   - inputLengths: `[N]` frames per sample, each in `0...T`; nil means T for every sample.
    ///   - beamWidth: prefixes kept per frame, at least 1.
    ///   - blank: the blank class.
    ///   - lengthNormalization: rank the final beam by log-probability divided by the label
    ///     count (at least 1) instead of by log-probability; pruning is unchanged.
    /// - Returns: for each of the `N` samples, up to `beamWidth` hypotheses, best first.
    ///   Width 1 agrees with greedy decoding when frames are confident (it follows the most
    ///   probable prefix, which can differ from the best single path when they are not).
    /// - Throws: `TensorError` for a wrong rank or dtype, a bad blank, bad lengths or a beam
    ///   width below 1.
    public static func ctcBeamSearchDecode(logProbs: Tensor, inputLengths: [Int]? = nil, beamWidth: Int, blank: Int = 0,
                                           lengthNormalization: Bool = false) throws -> [[CTCHypothesis]] {
        let op = "ctcBeamSearchDecode"
        guard beamWidth >= 1 else {
            throw TensorError.invalidArgument(op: op, message: "beamWidth must be at least 1, got \(beamWidth)")
        }
        let (values, time, n, c, lengths) = try ctcDecodingInput(logProbs, inputLengths, blank: blank, op: op)
        var results = [[CTCHypothesis]](repeating: [], count: n)
        // Samples are independent: each task decodes a range of them into its own slots.
        results.withUnsafeMutableBufferPointer { out in
            values.withUnsafeBufferPointer { v in
                nonisolated(unsafe) let (out, v) = (out, v)
                Parallel.forRanges(n, costPerItem: time * beamWidth * c * 64) { range in
                    for b in range {
                        var search = PrefixBeamSearch(classes: c, blank: blank, width: beamWidth)
                        for t in 0..<lengths[b] {
                            let row = (t * n + b) * c
                            search.step(UnsafeBufferPointer(rebasing: v[row..<(row + c)]))
                        }
                        out[b] = search.hypotheses(lengthNormalization: lengthNormalization)
                    }
                }
            }
        }
        return results
    }

    /// Validates decoder input; returns the values as float64 row-major `[T, N, C]`, the sizes
    /// and the input lengths.
    private static func ctcDecodingInput(_ logProbs: Tensor, _ inputLengths: [Int]?, blank: Int,
                                         op: String) throws -> ([Double], Int, Int, Int, [Int]) {
        try Kernels.requireFloat(logProbs, op)
        guard logProbs.rank == 3, logProbs.shape[2] > 0 else {
            throw TensorError.shapeMismatch(op: op, message: "logProbs must be [T, N, C] (time-major) with C > 0, got \(logProbs.shape)")
        }
        let (time, n, c) = (logProbs.shape[0], logProbs.shape[1], logProbs.shape[2])
        guard blank >= 0, blank < c else {
            throw TensorError.invalidArgument(op: op, message: "blank \(blank) is not a class of C = \(c)")
        }
        let lengths = inputLengths ?? [Int](repeating: time, count: n)
        guard lengths.count == n else {
            throw TensorError.shapeMismatch(op: op, message: "inputLengths has \(lengths.count) entries, expected N = \(n)")
        }
        if let bad = lengths.firstIndex(where: { $0 < 0 || $0 > time }) {
            throw TensorError.invalidArgument(op: op, message: "inputLengths[\(bad)] = \(lengths[bad]) is outside 0...\(time) (T)")
        }
        return (logProbs.toDoubleArray(), time, n, c, lengths)
    }
}

/// The state of a prefix beam search over one sample. Prefixes live in a trie (node 0 is the
/// empty prefix); each beam entry holds log P(prefix, path ends in blank) and
/// log P(prefix, path ends in its last label).
struct PrefixBeamSearch {
    let classes: Int, blank: Int, width: Int
    private var parent: [Int] = [-1], last: [Int] = [-1], length: [Int] = [0]
    private var children: [Int: Int] = [:]
    private var beam: [(node: Int, blank: Double, label: Double)] = [(0, 0, -.infinity)]
    private var next: [Int: (blank: Double, label: Double)] = [:]

    init(classes: Int, blank: Int, width: Int) {
        self.classes = classes; self.blank = blank; self.width = width
    }

    private static func logAdd(_ a: Double, _ b: Double) -> Double {
        let m = Swift.max(a, b)
        if m == -.infinity { return m }
        return m + Foundation.log(Foundation.exp(a - m) + Foundation.exp(b - m))
    }

    private mutating func child(_ node: Int, _ label: Int) -> Int {
        let key = node * classes + label
        if let existing = children[key] { return existing }
        let id = parent.count
        parent.append(node); last.append(label); length.append(length[node] + 1)
        children[key] = id
        return id
    }

    private mutating func add(_ node: Int, blank pb: Double = -.infinity, label pl: Double = -.infinity) {
        let old = next[node] ?? (-.infinity, -.infinity)
        next[node] = (Self.logAdd(old.blank, pb), Self.logAdd(old.label, pl))
    }

    /// Extends every prefix in the beam by one frame of log-probabilities (C values) and
    /// keeps the `width` best.
    mutating func step(_ lp: UnsafeBufferPointer<Double>) {
        next.removeAll(keepingCapacity: true)
        for entry in beam {
            let total = Self.logAdd(entry.blank, entry.label)
            add(entry.node, blank: total + lp[blank])
            for c in 0..<classes where c != blank {
                let p = lp[c]
                if p == -.infinity { continue }
                if c == last[entry.node] {
                    // A repeat without a blank in between stays the same prefix ...
                    add(entry.node, label: entry.label + p)
                    // ... and only a path ending in blank starts a new copy of the label.
                    add(child(entry.node, c), label: entry.blank + p)
                } else {
                    add(child(entry.node, c), label: total + p)
                }
            }
        }
        var candidates = next.map { (node: $0.key, blank: $0.value.blank, label: $0.value.label) }
        // Ties go to the shorter prefix, then the smaller node id, so the result is deterministic.
        candidates.sort { a, b in
            let sa = Self.logAdd(a.blank, a.label), sb = Self.logAdd(b.blank, b.label)
            if sa != sb { return sa > sb }
            if length[a.node] != length[b.node] { return length[a.node] < length[b.node] }
            return a.node < b.node
        }
        beam = Array(candidates.prefix(width))
    }

    /// The labels of a trie node, first to last.
    private func labels(_ node: Int) -> [Int] {
        var out: [Int] = [], k = node
        while k > 0 { out.append(last[k]); k = parent[k] }
        return out.reversed()
    }

    /// The current beam as hypotheses, best first.
    func hypotheses(lengthNormalization: Bool) -> [CTCHypothesis] {
        let scored = beam.map { entry -> (CTCHypothesis, Double) in
            let score = Self.logAdd(entry.blank, entry.label)
            let rank = lengthNormalization ? score / Double(Swift.max(length[entry.node], 1)) : score
            return (CTCHypothesis(labels: labels(entry.node), logProbability: score), rank)
        }
        return scored.enumerated().sorted { a, b in
            a.element.1 != b.element.1 ? a.element.1 > b.element.1 : a.offset < b.offset
        }.map(\.element.0)
    }
}
