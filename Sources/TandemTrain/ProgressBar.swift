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

    /// Items already done when this loop started (a run resumed mid-epoch): not timed.
    public let initial: Int
    /// Whether a bar is on screen without its line ended.
    private var barOpen = false

    public init(total: Int, label: String, enabled: Bool = true, run: (done: Int, total: Int)? = nil, delay: Double = 0,
                initial: Int = 0, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.total = total
        self.initial = initial
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
        // Opened without blocking (a FIFO without a reader) or becoming our controlling terminal;
        // only a terminal of this user is drawn on.
        guard let path = environment["TANDEM_PROGRESS_TTY"], !path.isEmpty else { return nil }
        let fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var info = stat()
        guard isatty(fd) != 0, fstat(fd, &info) == 0, info.st_uid == getuid() else { close(fd); return nil }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    /// Reports that `done` of `total` items are finished, with extra fields like "loss 0.123"
    /// (formatted only when a line is printed: not on silent ranks, nor between prints).
    public func update(_ done: Int, _ fields: @autoclosure () -> String = "") {
        guard enabled else { return }
        let now = Date()
        let elapsed = now.timeIntervalSince(start)
        let finished = total > 0 && done == total
        guard elapsed >= delay, finished || now.timeIntervalSince(lastPrint) >= (terminal != nil ? 0.1 : 10) else { return }
        lastPrint = now
        let text = Self.describe(label: label, done: done, total: total, elapsed: elapsed, run: run, fields: fields(),
                                 initial: initial)
        if let terminal {
            let width = 24
            let fraction = total > 0 ? Swift.min(Double(done) / Double(total), 1) : 1
            let filled = Swift.max(0, Swift.min(width, Int(fraction * Double(width))))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            try? terminal.write(contentsOf: Data("\r\u{1B}[K\(bar) \(text)\(finished ? "\n" : "")".utf8))
            barOpen = !finished
        } else {
            try? FileHandle.standardError.write(contentsOf: Data((text + "\n").utf8))
        }
    }

    /// Ends the bar's line when the loop stopped before its total (--max-steps).
    public func finish() {
        guard barOpen, let terminal else { return }
        try? terminal.write(contentsOf: Data("\n".utf8))
        barOpen = false
    }

    deinit { finish() }

    /// One report: "epoch 1/2 122/469 (26%) 11s, 10.9 it/s, ETA 32s (run 1m19s) loss 0.08".
    static func describe(label: String, done: Int, total: Int, elapsed: Double, run: (done: Int, total: Int)?,
                         fields: String, initial: Int = 0) -> String {
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        var text = String(format: "%@ %d/%d (%.0f%%) %@", label, done, total, fraction * 100, duration(elapsed))
        if done > initial && elapsed > 0 {
            let perItem = elapsed / Double(done - initial)
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
