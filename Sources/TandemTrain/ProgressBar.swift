import Foundation

/// Progress reporting for long loops: a redrawn bar on an interactive terminal, plain
/// periodic lines otherwise (logs, CI), both with the rate and an ETA. Silent when `enabled`
/// is false (ranks other than 0).
///
/// Under `tandem run` a rank's standard error is a pipe to the launcher's prefixer; when the
/// launcher itself writes to a terminal it names that terminal in `TANDEM_PROGRESS_TTY`, and
/// the bar is drawn there (everything else stays prefixed).
public final class ProgressBar {
    public let total: Int
    public let label: String
    public let enabled: Bool
    /// The whole run, when this loop is part of it: steps finished before this loop started,
    /// and the run's total steps. The run ETA assumes the rest goes at this loop's rate.
    public let run: (done: Int, total: Int)?
    /// Nothing is printed before this many seconds (short loops stay quiet).
    public let delay: Double
    private let terminal: FileHandle?
    private let start = Date()
    private var lastPrint = Date.distantPast

    public init(total: Int, label: String, enabled: Bool = true, run: (done: Int, total: Int)? = nil, delay: Double = 0,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.total = total
        self.label = label
        self.enabled = enabled
        self.run = run
        self.delay = delay
        terminal = enabled ? Self.terminal(environment) : nil
    }

    /// The terminal to draw on: standard error when it is one, else the launcher's
    /// (`TANDEM_PROGRESS_TTY`); nil for plain lines.
    private static func terminal(_ environment: [String: String]) -> FileHandle? {
        if isatty(STDERR_FILENO) != 0 { return FileHandle.standardError }
        guard let path = environment["TANDEM_PROGRESS_TTY"], !path.isEmpty,
              let handle = FileHandle(forWritingAtPath: path), isatty(handle.fileDescriptor) != 0 else { return nil }
        return handle
    }

    /// Reports that `done` of `total` items are finished, with extra fields like "loss 0.123"
    /// (formatted only when a line is printed: not on silent ranks, nor between prints).
    public func update(_ done: Int, _ fields: @autoclosure () -> String = "") {
        guard enabled else { return }
        let now = Date()
        let elapsed = now.timeIntervalSince(start)
        let finished = done >= total
        guard elapsed >= delay, finished || now.timeIntervalSince(lastPrint) >= (terminal != nil ? 0.1 : 10) else { return }
        lastPrint = now
        let text = Self.describe(label: label, done: done, total: total, elapsed: elapsed, run: run, fields: fields())
        if let terminal {
            let width = 24
            let fraction = total > 0 ? Swift.min(Double(done) / Double(total), 1) : 1
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            terminal.write(Data("\r\u{1B}[K\(bar) \(text)\(finished ? "\n" : "")".utf8))
        } else {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }

    /// One report: "epoch 1/2 122/469 (26%) 11s, 10.9 it/s, ETA 32s (run 1m19s) loss 0.08".
    static func describe(label: String, done: Int, total: Int, elapsed: Double, run: (done: Int, total: Int)?,
                         fields: String) -> String {
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        var text = String(format: "%@ %d/%d (%.0f%%) %@", label, done, total, fraction * 100, duration(elapsed))
        if done > 0 && elapsed > 0 {
            let perItem = elapsed / Double(done)
            text += String(format: ", %.1f it/s", 1 / perItem)
            // The loop ends at its total or where the run ends (--max-steps), whichever is first.
            let end = Swift.min(total, run.map { $0.total - $0.done } ?? total)
            if done < end {
                text += ", ETA " + duration(perItem * Double(end - done))
            }
            if let run, run.total > run.done + done {
                text += " (run " + duration(perItem * Double(run.total - run.done - done)) + ")"
            }
        }
        return fields.isEmpty ? text : text + "  " + fields
    }

    /// "45s", "3m07s", "2h05m".
    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }
}
