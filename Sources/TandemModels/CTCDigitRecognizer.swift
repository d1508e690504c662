import TandemNN

/// A digit-string recogniser for CTC (the `ctc-digits` model): images `[N, 1, 28, W]` →
/// time-major log-probabilities `[T, N, numClasses]` with `T = ⌊⌊W/2⌋/2⌋` (one frame per 4
/// pixel columns).
///
/// - `features`: `Conv2d(1, c₁, 3, p1)–BatchNorm2d–ReLU–MaxPool2d(2)–Conv2d(c₁, c₂, 3, p1)–
///   BatchNorm2d–ReLU–MaxPool2d(2)`, `[N, 1, 28, W]` → `[N, c₂, 7, T]`; each column of
///   `c₂·7` values is one frame;
/// - `proj`: `Linear(c₂·7, dModel)`;
/// - a bidirectional Mamba-2 encoder of `layers` residual layers: layer `i` adds
///   `forward.i(h)` and `reverse(backward.i(reverse(h)))` to `h` and applies `norms.i`
///   (LayerNorm). The reversal is per sample, within its own frame count, so the padding
///   frames of a batch never reach a sample's real frames in either direction;
/// - `classifier`: `Linear(dModel, numClasses)` and log-softmax over the classes.
///
/// Frame counts come from the real image widths: `frames(forWidth:)`. Set `widths` before
/// calling the module through a wrapper (DistributedDataParallel) that passes only the input,
/// or call `callAsFunction(_:widths:)`. State-dict names: `features.{0,1,4,5}.*`, `proj.*`,
/// `forward.{i}.*`, `backward.{i}.*`, `norms.{i}.*`, `classifier.*` (PyTorch-style).
public final class CTCDigitRecognizer: Module {
    /// Convolutional front end, `[N, 1, 28, W]` → `[N, c₂, 7, ⌊⌊W/2⌋/2⌋]`.
    public let features: ConvBlocks
    /// Frame projection `c₂·7 → dModel`.
    public let proj: Linear
    /// Left-to-right Mamba-2 blocks, one per layer (`[N, T, dModel]` → same).
    public let forwardBlocks: Sequential
    /// Right-to-left Mamba-2 blocks (run on the per-sample reversed sequence).
    public let backwardBlocks: Sequential
    /// A LayerNorm(dModel) after each bidirectional layer.
    public let norms: Sequential
    /// `dModel → numClasses` (class 0 is the blank).
    public let classifier: Linear
    /// Output classes (11 for digits: blank + 0…9).
    public let numClasses: Int
    /// Image widths `[N]` of the next `callAsFunction(_:)` (consumed by it); nil: every sample
    /// spans the whole padded width.
    public var widths: [Int]?
    /// Training mode (BatchNorm batch statistics).
    public var isTraining = true

    /// A recogniser with conv channels `channels` (two values), model width `dModel`, `layers`
    /// bidirectional Mamba-2 layers (`dState`, `headdim`, expand 2, chunk `chunkSize`).
    public init(numClasses: Int = 11, channels: (Int, Int) = (16, 32), dModel: Int = 64, layers: Int = 1,
                dState: Int = 16, headdim: Int = 32, chunkSize: Int = 64, generator: Generator = .default) {
        self.numClasses = numClasses
        features = ConvBlocks(
            Conv2d(1, channels.0, kernelSize: 3, padding: 1, generator: generator), BatchNorm2d(channels.0), ReLU(),
            MaxPool2d(kernelSize: 2),
            Conv2d(channels.0, channels.1, kernelSize: 3, padding: 1, generator: generator), BatchNorm2d(channels.1), ReLU(),
            MaxPool2d(kernelSize: 2))
        proj = Linear(channels.1 * 7, dModel, generator: generator)
        forwardBlocks = Sequential((0..<layers).map { _ in
            Mamba2(dModel: dModel, dState: dState, headdim: headdim, chunkSize: chunkSize, generator: generator)
        })
        backwardBlocks = Sequential((0..<layers).map { _ in
            Mamba2(dModel: dModel, dState: dState, headdim: headdim, chunkSize: chunkSize, generator: generator)
        })
        norms = Sequential((0..<layers).map { _ in LayerNorm([dModel]) })
        classifier = Linear(dModel, numClasses, generator: generator)
    }

    /// `features`, `proj`, `forward`, `backward`, `norms`, `classifier`.
    public var children: [(String, any Module)] {
        [("features", features), ("proj", proj), ("forward", forwardBlocks), ("backward", backwardBlocks),
         ("norms", norms), ("classifier", classifier)]
    }

    /// Output frames for an image `width` pixels wide: `⌊⌊width/2⌋/2⌋`.
    public static func frames(forWidth width: Int) -> Int { width / 2 / 2 }

    /// `[N, 1, 28, W]` → `[T, N, numClasses]` log-probabilities, with the sample widths of
    /// `widths` when set (then reset to nil), else all `W`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        let w = widths
        widths = nil
        return try callAsFunction(input, widths: w)
    }

    /// `[N, 1, 28, W]` with per-sample widths `[N]` (each ≤ W; nil: all W) → `[T, N, numClasses]`
    /// log-probabilities, `T = frames(forWidth: W)`. Frames at or past `frames(forWidth: widths[n])`
    /// are computed but meaningless; pass those frame counts to the loss and the decoders.
    public func callAsFunction(_ input: Tensor, widths: [Int]?) throws -> Tensor {
        guard input.rank == 4, input.shape[1] == 1, input.shape[2] == 28, input.shape[3] >= 4 else {
            throw TensorError.shapeMismatch(op: "CTCDigitRecognizer", message: "expects images [N, 1, 28, W ≥ 4], got \(input.shape)")
        }
        let (n, w) = (input.shape[0], input.shape[3])
        if let widths, widths.count != n || widths.contains(where: { $0 < 4 || $0 > w }) {
            throw TensorError.invalidArgument(op: "CTCDigitRecognizer", message: "widths \(widths) must be N = \(n) values in 4...\(w)")
        }
        let f = try features(input)                                               // [N, c, 7, T]
        let t = f.shape[3]
        var h = try proj(f.permute([0, 3, 1, 2]).reshape([n, t, -1]))             // [N, T, dModel]
        let lengths = (widths ?? [Int](repeating: w, count: n)).map { Swift.min(Self.frames(forWidth: $0), t) }
        let reversal = Self.reversalIndex(lengths: lengths, time: t)
        let dModel = h.shape[2]
        func reverse(_ x: Tensor) throws -> Tensor {
            guard let reversal else { return try x.flip1() }
            return try x.reshape([n * t, dModel]).indexSelect(axis: 0, index: reversal).reshape([n, t, dModel])
        }
        for i in 0..<norms.layers.count {
            let ahead = try forwardBlocks.layers[i](h)
            let back = try reverse(backwardBlocks.layers[i](reverse(h)))
            h = try norms.layers[i](h + ahead + back)
        }
        return try classifier(h).logSoftmax(axis: -1).transpose(0, 1).contiguous()   // [T, N, C]
    }

    /// Row index into `[N·T]` that reverses each sample's first `lengths[n]` frames and keeps
    /// the rest in place; nil when every length is T (a plain flip does).
    static func reversalIndex(lengths: [Int], time: Int) -> Tensor? {
        if lengths.allSatisfy({ $0 == time }) { return nil }
        var index: [Int] = []
        index.reserveCapacity(lengths.count * time)
        for (b, length) in lengths.enumerated() {
            for k in 0..<time { index.append(b * time + (k < length ? length - 1 - k : k)) }
        }
        return Tensor(int64: index)
    }
}

extension Tensor {
    /// Reverses axis 1 of `[N, T, D]` (differentiable, via an index).
    fileprivate func flip1() throws -> Tensor {
        let t = shape[1]
        return try indexSelect(axis: 1, index: Tensor(int64: (0..<t).reversed().map { $0 }))
    }
}
