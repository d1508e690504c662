import Foundation
import Testing
@testable import TandemTrain
import TandemTestSupport

/// TensorBoard event files: the bytes of a fixed run match the committed fixture, which
/// TensorBoard's own reader (the `tensorboard` package, Tests/Fixtures/tensorboard/read_events.py)
/// read back as expected.txt records; so this test needs no Python.
@Suite struct SummaryWriterTests {
    static var fixtures: String { Golden.folder.replacingOccurrences(of: "/golden", with: "/tensorboard") }

    /// The events of the fixture: two scalars at two steps and one histogram, at fixed times.
    func writeFixedRun(to directory: String) throws -> String {
        nonisolated(unsafe) var time = 1_700_000_000.0
        let writer = try SummaryWriter(directory: directory) { time += 0.5; return time }
        writer.addScalar("train/loss", 2.25, step: 10)
        writer.addScalar("train/loss", 0.5, step: 20)
        writer.addScalar("test/accuracy", 0.9375, step: 20)
        writer.addHistogram("weights/fc.weight", [-1, -0.5, 0, 0.25, 0.5, 1, 1], step: 20, buckets: 4)
        return writer.path
    }

    @Test func eventsMatchWhatTensorBoardRead() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: try writeFixedRun(to: directory)))
        if ProcessInfo.processInfo.environment["TANDEM_WRITE_FIXTURES"] == "1" {
            try bytes.write(to: URL(fileURLWithPath: Self.fixtures + "/events.out.tfevents.fixture"))
        }
        let fixture = try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/events.out.tfevents.fixture"))
        #expect(bytes == fixture, "the event bytes changed: regenerate the fixture and check it with read_events.py")
        // What TensorBoard read from the fixture (read_events.py's output, committed).
        let expected = try String(contentsOfFile: Self.fixtures + "/expected.txt", encoding: .utf8)
        #expect(expected.contains("scalar train/loss step 10 value 2.25"), "\(expected)")
        #expect(expected.contains("scalar test/accuracy step 20 value 0.9375"), "\(expected)")
        #expect(expected.contains("histogram weights/fc.weight step 20 min -1.0 max 1.0 num 7.0"), "\(expected)")
    }

    /// Every record's two checksums are right (CRC-32C, masked as TFRecord stores it).
    @Test func recordsCarryValidChecksums() throws {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/events.out.tfevents.fixture")))
        var offset = 0, records = 0
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
        while offset < bytes.count {
            let length = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) })
            #expect(u32(offset + 8) == CRC32C.masked(Array(bytes[offset..<(offset + 8)])))
            #expect(u32(offset + 12 + length) == CRC32C.masked(Array(bytes[(offset + 12)..<(offset + 12 + length)])))
            offset += 16 + length
            records += 1
        }
        #expect(offset == bytes.count && records == 5)
    }
}
