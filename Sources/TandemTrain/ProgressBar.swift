import Foundation

/// Progress reporting for long loops: a redrawn bar on an interactive terminal, plain
/// periodic lines otherwise (logs, CI). Silent when `enabled` is false (ranks other than 0).
public final class ProgressBar {
    public let total: Int
    public let label: String
    public let enabled: Bool
    private let interactive: Bool
    private let start = Date()
    private var lastPrint = Date.distantPast

    public init(total: Int, label: String, enabled: Bool = true) {
        self.total = total
        self.label = label
        self.enabled = enabled
        interactive = isatty(STDERR_FILENO) != 0
    }

    /// Reports that `done` of `total` items are finished, with extra fields like "loss 0.123"
    /// (formatted only when a line is printed: not on silent ranks, nor between prints).
    public func update(_ done: Int, _ fields: @autoclosure () -> String = "") {
        guard enabled else { return }
        let now = Date()
        let finished = done >= total
        guard finished || now.timeIntervalSince(lastPrint) >= (interactive ? 0.1 : 10) else { return }
        lastPrint = now
        let elapsed = now.timeIntervalSince(start)
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        if interactive {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            let line = String(format: "\r%@ %@ %3.0f%% %d/%d %.0fs %@", label, bar, fraction * 100, done, total, elapsed, fields())
            FileHandle.standardError.write(Data(line.utf8))
            if finished { FileHandle.standardError.write(Data("\n".utf8)) }
        } else {
            let line = String(format: "%@ %d/%d (%.0f%%) %.0fs %@\n", label, done, total, fraction * 100, elapsed, fields())
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}
