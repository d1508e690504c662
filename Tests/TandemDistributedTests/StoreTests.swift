import Foundation
import Glibc
import TandemDistributed
import TandemTestSupport
import XCTest

/// Connects a raw socket to 127.0.0.1:port, writes `bytes`, and closes (a garbage client).
func sendGarbage(port: Int, _ bytes: [UInt8], keepOpenFor seconds: Double = 0) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    _ = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    if seconds > 0 { Thread.sleep(forTimeInterval: seconds) }
    close(fd)
}

/// TCPStore, FileStore and PrefixStore: operations, timeouts, bad peers and bad addresses.
final class StoreTests: XCTestCase {
    private func exercise(_ a: any Store, _ b: any Store) throws {
        try a.set("x", [1, 2, 3])
        XCTAssertEqual(try b.get("x"), [1, 2, 3])
        XCTAssertEqual(try a.add("n", 5), 5)
        XCTAssertEqual(try b.add("n", -2), 3)
        XCTAssertEqual(try b.compareSet("c", expected: [], desired: [7]), [7])
        XCTAssertEqual(try a.compareSet("c", expected: [9], desired: [8]), [7])
        XCTAssertEqual(try a.compareSet("c", expected: [7], desired: [8]), [8])
        XCTAssertTrue(try a.check(["x", "n"]))
        XCTAssertFalse(try a.check(["x", "missing"]))
        // A get that waits for a later set.
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { try? a.set("late", Array("hi".utf8)) }
        XCTAssertEqual(try b.getString("late", timeout: .seconds(5)), "hi")
        try b.wait(["x", "late"], timeout: .seconds(1))
        // Timeouts are typed errors naming the key, and do not hang.
        let start = ContinuousClock.now
        XCTAssertThrowsError(try b.wait(["never"], timeout: .milliseconds(200))) { error in
            guard case DistributedError.store = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("never"), "\(error)")
        }
        XCTAssertThrowsError(try b.get("never", timeout: .milliseconds(200)))
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(2))
        // The store still works after a timeout.
        XCTAssertEqual(try b.get("x"), [1, 2, 3])
        // Prefixes keep groups apart.
        let pa = PrefixStore(prefix: "g1", base: a), pb = PrefixStore(prefix: "g2", base: b)
        try pa.set("k", [1])
        try pb.set("k", [2])
        XCTAssertEqual(try PrefixStore(prefix: "g1", base: b).get("k"), [1])
        XCTAssertEqual(try pb.get("k"), [2])
        XCTAssertEqual(try a.get("g1/k"), [1])
    }

    func testTCPStoreOperations() throws {
        let server = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5))
        let client = try TCPStore(host: "127.0.0.1", port: server.port, isServer: false, timeout: .seconds(5))
        try exercise(server, client)
        XCTAssertTrue(try client.deleteKey("x"))
        XCTAssertFalse(try client.check(["x"]))
        XCTAssertThrowsError(try client.add("c", 1)) { XCTAssertTrue("\($0)".contains("integer"), "\($0)") }
    }

    func testFileStoreOperations() throws {
        let path = NSTemporaryDirectory() + "tandem-filestore-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let a = try FileStore(path: path, timeout: .seconds(5))
        let b = try FileStore(path: path, timeout: .seconds(5))
        try exercise(a, b)
        XCTAssertThrowsError(try FileStore(path: "/nonexistent-dir/x")) { error in
            guard case DistributedError.store = error else { return XCTFail("\(error)") }
        }
    }

    func testGarbageClientsDoNotHurtTheServer() throws {
        let server = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5))
        try server.set("k", [42])
        // A huge length prefix, random bytes, a truncated frame, a bad command, an HTTP request.
        sendGarbage(port: server.port, [0xff, 0xff, 0xff, 0x7f, 1, 2, 3])
        sendGarbage(port: server.port, (0..<4096).map { _ in UInt8.random(in: 0...255) })
        sendGarbage(port: server.port, [10, 0, 0, 0, 1, 5], keepOpenFor: 0.05)
        sendGarbage(port: server.port, [5, 0, 0, 0, 99, 0, 0, 0, 0])
        sendGarbage(port: server.port, Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        // A client that disconnects while waiting.
        sendGarbage(port: server.port, [9, 0, 0, 0, 5, 4, 0, 0, 0] + Array("wait".utf8), keepOpenFor: 0.05)
        let client = try TCPStore(host: "127.0.0.1", port: server.port, isServer: false, timeout: .seconds(5))
        XCTAssertEqual(try client.get("k"), [42])
        try client.set("wait", [1])
        XCTAssertEqual(try server.get("wait"), [1])
    }

    func testOwnedKeysVanishWithTheirConnection() throws {
        let server = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5))
        var client: TCPStore? = try TCPStore(host: "127.0.0.1", port: server.port, isServer: false, timeout: .seconds(5))
        try client?.setOwned("alive/1", [1])
        XCTAssertTrue(try server.check(["alive/1"]))
        client = nil
        let deadline = ContinuousClock.now + .seconds(2)
        while try server.check(["alive/1"]), ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertFalse(try server.check(["alive/1"]))
    }

    func testPortInUse() throws {
        let server = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5))
        XCTAssertThrowsError(try TCPStore(host: "127.0.0.1", port: server.port, isServer: true, timeout: .seconds(1))) { error in
            guard case let DistributedError.addressInUse(_, port) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(port, server.port)
            XCTAssertTrue("\(error)".contains("already in use"))
        }
    }

    func testUnreachableMasterFailsWithinTheTimeout() throws {
        let port = freePort()
        let start = ContinuousClock.now
        XCTAssertThrowsError(try TCPStore(host: "127.0.0.1", port: port, isServer: false, timeout: .milliseconds(500))) { error in
            guard case DistributedError.unreachable = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("127.0.0.1:\(port)"), "\(error)")
            XCTAssertTrue("\(error)".contains("MASTER_ADDR"), "\(error)")
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(3))
    }

    func testServerExitMakesClientsFailNotHang() throws {
        var server: TCPStore? = try TCPStore(host: "127.0.0.1", port: 0, isServer: true, timeout: .seconds(5))
        let client = try TCPStore(host: "127.0.0.1", port: server!.port, isServer: false, timeout: .milliseconds(500))
        try client.set("a", [1])
        server?.shutdown()
        server = nil
        let start = ContinuousClock.now
        XCTAssertThrowsError(try client.get("a")) { error in
            guard case DistributedError.store = error else { return XCTFail("\(error)") }
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(3))
    }
}
