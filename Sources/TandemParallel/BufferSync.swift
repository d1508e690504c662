import TandemCore
import TandemNN

/// Carries a model's buffers (BatchNorm running statistics and counters) inside DDP's first
/// gradient bucket, so that one all-reduce per step synchronises both: every 16-bit piece of
/// the buffers' bytes becomes one float element of the bucket, holding the piece on the root
/// rank and 0 elsewhere. Summed over the ranks, each element is the root's piece again (whole
/// numbers below 2^16 are exact in float32), so every rank decodes the root's buffers bit for
/// bit, whatever their dtype.
struct BufferSync {
    let buffers: [Buffer]
    /// Bucket elements needed: one per 16-bit piece.
    let elementCount: Int

    /// Nil when there is nothing to carry or a buffer's dtype is not float32, float64, int32 or
    /// int64 (those are broadcast separately instead).
    init?(_ buffers: [Buffer]) {
        let supported: Set<DType> = [.float32, .float64, .int32, .int64]
        guard !buffers.isEmpty, buffers.allSatisfy({ supported.contains($0.value.dtype) }) else { return nil }
        self.buffers = buffers
        elementCount = buffers.reduce(0) { $0 + $1.value.count * $1.value.dtype.byteSize / 2 }
    }

    /// Whether the buffers still have the sizes this carrier was made for.
    var fits: Bool {
        buffers.reduce(0) { $0 + $1.value.count * $1.value.dtype.byteSize / 2 } == elementCount
    }

    /// Writes the pieces (`isRoot`) or zeros into `flat[offset ..< offset + elementCount]`;
    /// `flat` is float32 or float64.
    func encode(into flat: inout Tensor, at offset: Int, isRoot: Bool) throws {
        if flat.dtype == .float64 {
            try flat.withUnsafeMutableBufferPointer(as: Double.self) { try write(into: $0, at: offset, isRoot: isRoot) }
        } else {
            try flat.withUnsafeMutableBufferPointer(as: Float.self) { try write(into: $0, at: offset, isRoot: isRoot) }
        }
    }

    /// Reads the summed pieces back into the buffers. Throws if an element is not a whole
    /// number in 0..<65536 (some rank wrote pieces that were not the root's).
    func decode(from flat: Tensor, at offset: Int) throws {
        let values: [Double] = try flat.dtype == .float64
            ? flat.withUnsafeBufferPointer(as: Double.self) { Array($0[offset..<(offset + elementCount)]) }
            : flat.withUnsafeBufferPointer(as: Float.self) { $0[offset..<(offset + elementCount)].map(Double.init) }
        var k = 0
        for b in buffers {
            let pieces = b.value.count * b.value.dtype.byteSize / 2
            var bytes = [UInt16](repeating: 0, count: pieces)
            for j in 0..<pieces {
                guard let piece = UInt16(exactly: values[k + j]) else {
                    throw DataParallelError.invalidArgument("buffer synchronisation received \(values[k + j]), not a 16-bit piece: the ranks disagree on which one is the root")
                }
                bytes[j] = piece
            }
            k += pieces
            let shape = b.value.shape, dtype = b.value.dtype
            b.value = try bytes.withUnsafeBytes { try Tensor(bytes: $0, shape: shape, dtype: dtype) }
        }
    }

    private func write<F: BinaryFloatingPoint>(into d: UnsafeMutableBufferPointer<F>, at offset: Int, isRoot: Bool) throws {
        guard isRoot else {
            for j in offset..<(offset + elementCount) { d[j] = 0 }
            return
        }
        var k = offset
        for b in buffers {
            try Self.withBytes(b.value) { raw in
                for j in 0..<(raw.count / 2) { d[k + j] = F(raw.load(fromByteOffset: 2 * j, as: UInt16.self)) }
                k += raw.count / 2
            }
        }
    }

    private static func withBytes(_ t: Tensor, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        switch t.dtype {
        case .float64: try t.withUnsafeBufferPointer(as: Double.self) { try body(UnsafeRawBufferPointer($0)) }
        case .int64: try t.withUnsafeBufferPointer(as: Int64.self) { try body(UnsafeRawBufferPointer($0)) }
        case .int32: try t.withUnsafeBufferPointer(as: Int32.self) { try body(UnsafeRawBufferPointer($0)) }
        default: try t.withUnsafeBufferPointer(as: Float.self) { try body(UnsafeRawBufferPointer($0)) }
        }
    }
}
