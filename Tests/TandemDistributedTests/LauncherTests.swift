import Foundation
import XCTest

/// `tandem run` never leaves ranks behind: whether the launcher is killed outright (SIGKILL),
/// or stopped with SIGHUP (the terminal closed), SIGTERM or SIGINT, every rank ends.
final class LauncherTests: XCTestCase {
    /// The pids whose parent is `parent` (from /proc).
    private func children(of parent: Int32) -> [Int32] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        return pids.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == parent
        }
    }

    /// Whether `pid` still runs (a zombie waiting to be reaped does not).
    private func running(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// Starts `tandem run` with 2 ranks that sleep, sends `signal` to the launcher once both
    /// ranks run, and returns how long the last rank took to end (nil: one still ran after 10 s).
    private func ranksEnd(after signal: Int32) throws -> Double? {
        let launcher = Process()
        launcher.executableURL = URL(fileURLWithPath: try tandemExecutable())
        launcher.arguments = ["run", "--standalone", "--nproc-per-node", "2", "--stop-grace", "1", "--", "/bin/sleep", "60"]
        launcher.standardOutput = FileHandle.nullDevice
        launcher.standardError = FileHandle.nullDevice
        try launcher.run()
        var ranks: [Int32] = []
        let started = Date()
        while ranks.count < 2 && Date().timeIntervalSince(started) < 10 {
            Thread.sleep(forTimeInterval: 0.05)
            ranks = children(of: launcher.processIdentifier)
        }
        XCTAssertEqual(ranks.count, 2, "the ranks did not start")
        let sent = Date()
        kill(launcher.processIdentifier, signal)
        while ranks.contains(where: running) && Date().timeIntervalSince(sent) < 10 { Thread.sleep(forTimeInterval: 0.02) }
        let ended = ranks.contains(where: running) ? nil : Date().timeIntervalSince(sent)
        for pid in ranks where running(pid) { kill(pid, SIGKILL) }
        launcher.waitUntilExit()
        return ended
    }

    func testRanksDieWithTheLauncher() throws {
        for (signal, name) in [(SIGKILL, "SIGKILL"), (SIGHUP, "SIGHUP"), (SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            let seconds = try ranksEnd(after: signal)
            XCTAssertNotNil(seconds, "ranks outlived the launcher after \(name)")
            print("launcher \(name): ranks ended after \(seconds.map { String(format: "%.2f s", $0) } ?? "-")")
        }
    }

    /// More processes than cores: a warning that says what it costs.
    func testMoreProcessesThanCoresWarns() throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try tandemExecutable())
        p.arguments = ["run", "--standalone", "--nproc-per-node", String(cores + 1), "--", "/bin/true"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertTrue(text.contains("warning: --nproc-per-node \(cores + 1) on \(cores) core"), text)
    }
}
