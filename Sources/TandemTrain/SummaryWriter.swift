import Foundation
import TandemCore

/// TensorBoard event files, like `torch.utils.tensorboard.SummaryWriter`: scalars and
/// histograms that `tensorboard --logdir DIR` shows.
///
/// The file is a TFRecord stream of `Event` protocol buffers. Tandem encodes the few messages it
/// needs by hand (`ProtoWriter`: `Event`, `Summary`, `Summary.Value`, `HistogramProto`) rather
/// than adding swift-protobuf and generated code for five messages; the framing is a length,
/// the data and two masked CRC-32C checksums (`CRC32C`). Each record is written and flushed at
/// once, so a running job can be watched.
public final class SummaryWriter {
    /// The event file's path.
    public let path: String
    private let handle: FileHandle
    private let clock: () -> Double
    private var failed = false

    /// Creates `directory` if needed and a new event file in it (`events.out.tfevents.<time>.<host>`).
    /// `clock` gives the wall time of each event (Unix seconds; tests fix it).
    public init(directory: String, clock: @escaping () -> Double = { Date().timeIntervalSince1970 }) throws {
        try OutputFolder.prepare(directory, flag: "--tensorboard")
        self.clock = clock
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        // A new file, never an earlier writer's of the same second and process (O_EXCL).
        var fd: Int32 = -1, candidate = ""
        for attempt in 0..<1000 where fd < 0 {
            candidate = directory + "/events.out.tfevents.\(Int(clock())).\(host).\(getpid())" + (attempt == 0 ? "" : ".\(attempt)")
            fd = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd < 0 && errno != EEXIST { break }
        }
        guard fd >= 0 else { throw TrainError.io("cannot create a TensorBoard event file in '\(directory)'") }
        path = candidate
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        var event = ProtoWriter()
        event.double(1, clock())
        event.string(3, "brain.Event:2")
        write(event.bytes)
    }


    /// Adds a scalar, like `SummaryWriter.add_scalar(tag, value, step)`.
    public func addScalar(_ tag: String, _ value: Double, step: Int) {
        var summaryValue = ProtoWriter()
        summaryValue.string(1, tag)
        summaryValue.float(2, Float(value))
        writeSummary(summaryValue, step: step)
    }

    /// Adds a histogram of `values`, like `add_histogram` (buckets of equal width between the
    /// minimum and maximum; non-finite values are left out).
    public func addHistogram(_ tag: String, _ values: [Double], step: Int, buckets: Int = 30) {
        let finite = values.filter(\.isFinite)
        guard buckets >= 1, let low = finite.min(), let high = finite.max() else { return }
        var counts = [Double](repeating: 0, count: buckets)
        let width = (high - low) / Double(buckets)
        for v in finite {
            let i = width > 0 ? Swift.min(Int((v - low) / width), buckets - 1) : buckets - 1
            counts[i] += 1
        }
        let limits = (1...buckets).map { low + width * Double($0) }
        var histogram = ProtoWriter()
        histogram.double(1, low)
        histogram.double(2, high)
        histogram.double(3, Double(finite.count))
        histogram.double(4, finite.reduce(0, +))
        histogram.double(5, finite.reduce(0) { $0 + $1 * $1 })
        histogram.packedDoubles(6, limits)
        histogram.packedDoubles(7, counts)
        var summaryValue = ProtoWriter()
        summaryValue.string(1, tag)
        summaryValue.message(5, histogram)
        writeSummary(summaryValue, step: step)
    }

    private func writeSummary(_ value: ProtoWriter, step: Int) {
        var summary = ProtoWriter()
        summary.message(1, value)
        var event = ProtoWriter()
        event.double(1, clock())
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.message(5, summary)
        write(event.bytes)
    }

    /// One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C.
    private func write(_ data: [UInt8]) {
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian, Array.init)
        var record = length
        record += withUnsafeBytes(of: CRC32C.masked(length).littleEndian, Array.init)
        record += data
        record += withUnsafeBytes(of: CRC32C.masked(data).littleEndian, Array.init)
        // A full disk or a failing file system ends the event file, not the training run.
        guard !failed else { return }
        do { try handle.write(contentsOf: Data(record)) } catch { failed = true }
    }
}

/// The protocol-buffer wire format for the fields the event file needs.
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    private mutating func key(_ field: Int, _ wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }

    private mutating func rawVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func varint(_ field: Int, _ value: UInt64) { key(field, 0); rawVarint(value) }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init)
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init)
    }

    mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        key(field, 2)
        rawVarint(UInt64(payload.count))
        bytes += payload
    }

    mutating func string(_ field: Int, _ value: String) { lengthDelimited(field, Array(value.utf8)) }

    mutating func message(_ field: Int, _ message: ProtoWriter) { lengthDelimited(field, message.bytes) }

    mutating func packedDoubles(_ field: Int, _ values: [Double]) {
        lengthDelimited(field, values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
    }
}

/// CRC-32C (Castagnoli), masked as TFRecord files store it.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { i in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in data { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func masked(_ data: [UInt8]) -> UInt32 {
        let c = checksum(data)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}
