import Foundation
import XCTest
@testable import TandemDistributed
import TandemTestSupport

/// Nothing waits in silence: a stopped rank ends the job within the heartbeat timeout naming
/// it, a rendezvous names who is missing and gives up, a dead rank's claim is released, and the
/// timeouts are settable.
final class LivenessTests: XCTestCase {
    func testTimeoutsComeFromTheEnvironment() throws {
        XCTAssertEqual(try DistributedTimeouts.resolve(environment: [:]),
                       DistributedTimeouts(operation: .seconds(1800), rendezvous: .seconds(600), heartbeat: .seconds(20)))
        let set = try DistributedTimeouts.resolve(environment: ["TANDEM_TIMEOUT": "90", "TANDEM_RENDEZVOUS_TIMEOUT": "120",
                                                                "TANDEM_HEARTBEAT_TIMEOUT": "0"])
        XCTAssertEqual(set, DistributedTimeouts(operation: .seconds(90), rendezvous: .seconds(90), heartbeat: nil))
        XCTAssertEqual(try DistributedTimeouts.resolve(operation: .seconds(5), environment: ["TANDEM_TIMEOUT": "90"]).operation,
                       .seconds(5))
        for bad in ["-1", "nan", "soon", "0"] {
            XCTAssertThrowsError(try DistributedTimeouts.resolve(environment: ["TANDEM_TIMEOUT": bad])) { error in
                XCTAssertTrue("\(error)".contains("TANDEM_TIMEOUT"), "\(error)")
            }
        }
    }

    /// A rank killed during rendezvous left `tandem/rank/1` claimed, so its restart was refused
    /// ("claimed by two processes"). A claim now belongs to the claiming connection.
    func testAClaimIsReleasedWhenItsConnectionCloses() throws {
        let server = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5))
        let first = try TCPStore(host: "127.0.0.1", port: server.port, isServer: false, timeout: .seconds(5))
        XCTAssertTrue(try first.claim("tandem/rank/1", Array("a".utf8)))
        let second = try TCPStore(host: "127.0.0.1", port: server.port, isServer: false, timeout: .seconds(5))
        XCTAssertFalse(try second.claim("tandem/rank/1", Array("b".utf8)), "claimed twice while the first holds it")
        first.shutdown()
        let deadline = Date().addingTimeInterval(5)
        var claimed = false
        while !claimed && Date() < deadline {
            claimed = try second.claim("tandem/rank/1", Array("b".utf8))
            if !claimed { Thread.sleep(forTimeInterval: 0.01) }
        }
        XCTAssertTrue(claimed, "the claim of a closed connection was not released")
    }

    /// One rank of two, started alone: it names the missing rank while it waits and gives up
    /// after TANDEM_RENDEZVOUS_TIMEOUT with an error naming it.
    func testRendezvousNamesTheMissingRankAndGivesUp() throws {
        let l = Launch()
        try l.start(["dist-selftest", "--init-method", "tcp://127.0.0.1:\(freePort())", "--rank", "0", "--world-size", "2",
                     "--timeout-ms", "60000", "--op", "barrier"], environment: ["TANDEM_RENDEZVOUS_TIMEOUT": "2"])
        let r = l.wait(limit: 20)[0]
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("waiting at 127.0.0.1:") && r.stderr.contains("for rank(s) 1 of 2 to join"), r.stderr)
        XCTAssertTrue(r.stderr.contains("rank(s) 1 of 2 did not arrive"), r.stderr)
        XCTAssertLessThan(r.seconds, 6)
    }

    /// A rank stopped with SIGSTOP in the middle of training-like collectives: the job ends
    /// within the heartbeat timeout (2 s here) plus its polling, naming the stopped rank;
    /// rank 1 (watched by rank 0) and rank 0 (which serves the store, behind the job's token).
    func testAStoppedRankEndsTheJobNamingIt() throws {
        for rank in [1, 0] { try stopRankAndExpectTheJobToEnd(rank) }
    }

    private func stopRankAndExpectTheJobToEnd(_ stoppedRank: Int) throws {
        let launcher = Process()
        launcher.executableURL = URL(fileURLWithPath: try tandemExecutable())
        launcher.arguments = ["run", "--standalone", "--nproc-per-node", "2", "--stop-grace", "1", "--", try selftestExecutable(), "dist-selftest",
                              "--timeout-ms", "600000", "--op", "allreduce", "--reduce-op", "sum", "--count", "1000",
                              "--iterations", "100000000"]
        launcher.environment = childEnvironment(["TANDEM_HEARTBEAT_TIMEOUT": "2"])
        let err = Pipe()
        launcher.standardError = err
        launcher.standardOutput = FileHandle.nullDevice
        let errText = Sink()
        let reader = Thread { errText.data.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
        try launcher.run()
        reader.start()
        // The rank is the child with its LOCAL_RANK; let the collectives run for a moment first.
        Thread.sleep(forTimeInterval: 2)
        let rank1 = try XCTUnwrap(childWithEnvironment("LOCAL_RANK=\(stoppedRank)", parent: launcher.processIdentifier))
        let stoppedAt = Date()
        kill(rank1, SIGSTOP)
        let deadline = Date().addingTimeInterval(30)
        while launcher.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let detected = Date().timeIntervalSince(stoppedAt)
        if launcher.isRunning { kill(launcher.processIdentifier, SIGKILL) }
        kill(rank1, SIGKILL)
        launcher.waitUntilExit()
        Thread.sleep(forTimeInterval: 0.2)
        let text = errText.text
        XCTAssertNotEqual(launcher.terminationStatus, 0)
        XCTAssertTrue(text.contains("rank \(stoppedRank) has sent no heartbeat"), text)
        XCTAssertLessThan(detected, 8, text)
        print("stopped rank \(stoppedRank) detected and the job ended after \(String(format: "%.2f", detected)) s (heartbeat timeout 2 s)")
    }

    /// The child of `parent` whose environment holds `entry`.
    private func childWithEnvironment(_ entry: String, parent: Int32) -> Int32? {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        return pids.first { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")"),
                  stat[stat.index(after: close)...].split(separator: " ").dropFirst().first.flatMap({ Int32($0) }) == parent,
                  let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
            return environ.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == entry }
        }
    }
}

/// The rendezvous store against strangers: a token before any request, small frames before it,
/// and the loopback interface for single-node jobs.
final class StoreSecurityTests: XCTestCase {
    func testAClientWithoutTheTokenIsRefused() throws {
        let server = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5), token: "job-secret")
        try server.set("tandem/alive/0", [1])
        let member = try TCPStore(host: "127.0.0.1", port: server.port, isServer: false, timeout: .seconds(5), token: "job-secret")
        XCTAssertEqual(try member.get("tandem/alive/0"), [1])
        // No token: the first request is refused and the connection closed.
        let stranger = try TCPStore(host: "127.0.0.1", port: server.port, isServer: false, timeout: .seconds(2), token: nil)
        XCTAssertThrowsError(try stranger.get("tandem/alive/0", timeout: .seconds(2))) { error in
            XCTAssertTrue("\(error)".contains("token"), "\(error)")
        }
        XCTAssertThrowsError(try stranger.claim("tandem/rank/1", [1]))
        // A wrong token: refused when connecting.
        XCTAssertThrowsError(try TCPStore(host: "127.0.0.1", port: server.port, isServer: false, timeout: .seconds(2),
                                          token: "guess")) { error in
            XCTAssertTrue("\(error)".contains("TANDEM_STORE_TOKEN"), "\(error)")
        }
        XCTAssertEqual(try member.get("tandem/alive/0"), [1], "the job's own clients keep working")
    }

    /// Before authenticating, a client cannot make the server buffer more than a token's worth:
    /// a frame announcing 100 MB closes the connection at once.
    func testAnUnauthenticatedLargeFrameIsDropped() throws {
        let server = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5), token: "job-secret")
        let fd = try Sockets.connect(host: "127.0.0.1", port: server.port, deadline: .now + .seconds(2))
        defer { close(fd) }
        try Sockets.sendAll(fd, StoreWire.u32(100_000_000) + [UInt8](repeating: 7, count: 4096), deadline: .now + .seconds(2))
        // The server closes the connection: a read returns end of file (or a reset) within a second.
        XCTAssertTrue(try Sockets.wait(fd, events: Int16(POLLIN), deadline: .now + .seconds(2)))
        var byte: UInt8 = 0
        XCTAssertLessThanOrEqual(recv(fd, &byte, 1, 0), 0)
    }

    /// A single-node store listens on 127.0.0.1 only, not on every interface.
    func testASingleNodeStoreListensOnLoopback() throws {
        let server = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5), token: nil)
        XCTAssertEqual(server.listeningAddress, "127.0.0.1")
        let named = try TCPStore(host: "localhost", port: 0, isServer: true, timeout: .seconds(5), token: nil)
        XCTAssertEqual(named.listeningAddress, "127.0.0.1")
    }
}

/// Random and mutated frames against the store server: it never crashes, drops only the
/// offending connections, and keeps answering the job's clients.
final class StoreFuzzTests: XCTestCase {
    func testFuzzedFramesLeaveTheStoreServing() throws {
        for token in [nil, "job-secret"] as [String?] {
            let server = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5), token: token)
            try server.set("k", [42])
            var state: UInt64 = 99
            func next(_ bound: Int) -> Int {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Int(state >> 33) % max(bound, 1)
            }
            let valid = StoreWire.frame(StoreWire.Command.get.rawValue, [Array("k".utf8)])
            for round in 0..<300 {
                var bytes = round % 3 == 0 ? (0..<next(48)).map { _ in UInt8(next(256)) } : valid
                if round % 3 != 0 {
                    for _ in 0...next(3) where !bytes.isEmpty { bytes[next(bytes.count)] = UInt8(next(256)) }
                }
                let fd = try Sockets.connect(host: "127.0.0.1", port: server.port, deadline: .now + .seconds(2))
                try? Sockets.sendAll(fd, bytes, deadline: .now + .seconds(1))
                close(fd)
            }
            let client = try TCPStore(host: "127.0.0.1", port: server.port, isServer: false, timeout: .seconds(5), token: token)
            XCTAssertEqual(try client.get("k"), [42], "token \(token ?? "none")")
        }
    }
}
