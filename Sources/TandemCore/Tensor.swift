/// An n-dimensional array with reverse-mode automatic differentiation.
///
/// `Tensor` has value semantics: `var b = a; b += 1` leaves `a` unchanged. Views
/// (`reshape`, `permute`, `transpose`, slicing, `expand`, ...) share the underlying
/// storage for reading; any write copies first (copy-on-write), so a view never changes
/// the tensor it came from.
///
/// Shapes are row-major lists of dimension sizes; `[]` is a scalar. Strides are in
/// elements and may be zero (broadcast) but never negative.
public struct Tensor: @unchecked Sendable {
    var storage: TensorStorage
    /// Dimension sizes, outermost first.
    public private(set) var shape: [Int]
    /// Element strides per dimension.
    public private(set) var strides: [Int]
    /// Offset of element `[0, 0, ...]` in the storage, in elements.
    var offset: Int
    /// The element type.
    public let dtype: DType
    /// The autograd node: an accumulator for leaves that require grad, the producing op otherwise.
    var gradNode: GradNode?

    init(storage: TensorStorage, shape: [Int], strides: [Int], offset: Int = 0, dtype: DType, gradNode: GradNode? = nil) {
        self.storage = storage
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.dtype = dtype
        self.gradNode = gradNode
    }

    /// A new contiguous tensor with uninitialised contents.
    init(uninitializedShape shape: [Int], dtype: DType) {
        let count = Shape.count(shape)
        self.init(storage: TensorStorage(byteCount: count * dtype.byteSize), shape: shape,
                  strides: Shape.contiguousStrides(shape), dtype: dtype)
    }

    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// Number of elements (`numel()` in PyTorch).
    public var count: Int { Shape.count(shape) }
    /// True when the elements are laid out row-major without gaps.
    public var isContiguous: Bool {
        var expected = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) where shape[i] != 1 {
            if strides[i] != expected { return false }
            expected *= shape[i]
        }
        return true
    }

    /// How many times a write has copied a tensor's elements first because they were shared
    /// (or strided) since the process started: the cost of copy-on-write. Diagnostics for tests
    /// and benchmarks (e.g. that DDP's gradient buckets are never copied).
    public static var copyOnWriteCount: Int { TensorStorage.copiesOnWrite.load(ordering: .relaxed) }

    /// Size of one dimension; negative axes count from the end.
    public func size(_ axis: Int) throws -> Int {
        shape[try Shape.normalizeAxis(axis, rank: rank, op: "size")]
    }

    // MARK: - Raw access (kernel files only)

    /// Pointer to element `[0, 0, ...]`, typed.
    func elementPointer<T>(_: T.Type) -> UnsafeMutablePointer<T> {
        storage.bytes.assumingMemoryBound(to: T.self) + offset
    }

    /// A contiguous copy if needed; `self` if already contiguous.
    func contiguousStorage() -> Tensor { isContiguous ? self : Kernels.contiguousCopy(self) }

    /// Makes this tensor's storage contiguous and owned by this value alone, so that it can be
    /// written in place. Keeps the autograd node.
    mutating func makeUniquelyOwned() {
        if !isContiguous || !isKnownUniquelyReferenced(&storage) || offset != 0
            || storage.byteCount != count * dtype.byteSize {
            let node = gradNode
            TensorStorage.copiesOnWrite.add(1, ordering: .relaxed)
            self = Kernels.contiguousCopy(self)
            gradNode = node
        }
    }

    /// Calls `body` with a pointer over the contiguous elements, writable in place.
    /// The tensor is copied first if its storage is shared (copy-on-write).
    mutating func withUnsafeMutableElements<T, R>(_: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R) rethrows -> R {
        makeUniquelyOwned()
        return try body(UnsafeMutableBufferPointer(start: elementPointer(T.self), count: count))
    }

    /// A view with a new shape and strides over the same storage (no autograd).
    func restrided(shape: [Int], strides: [Int], offset: Int) -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype)
    }
}
