import Foundation
import Synchronization

/// Serializes the children's prefixed output lines.
final class OutputSink: Sendable {
    private let lock = Mutex(())
    private let unprefixedStdoutRank: Int?

    init(unprefixedStdoutRank: Int? = nil) { self.unprefixedStdoutRank = unprefixedStdoutRank }

    func line(rank: Int, _ text: Data, toStderr: Bool) {
        let prefixed = toStderr || rank != unprefixedStdoutRank
        var data = Data((prefixed ? "[rank \(rank)] " : "").utf8)
        data.append(text)
        data.append(UInt8(ascii: "\n"))
        lock.withLock { _ in (toStderr ? FileHandle.standardError : FileHandle.standardOutput).write(data) }
    }

    func log(_ message: String) {
        lock.withLock { _ in FileHandle.standardError.write(Data((message + "\n").utf8)) }
    }
}
