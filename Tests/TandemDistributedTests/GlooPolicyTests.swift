@testable import TandemDistributed
import XCTest

/// When a rank that waits for its collective spins on its sockets (no processes).
final class GlooPolicyTests: XCTestCase {
    func testBusyPollIsOptIn() throws {
        XCTAssertTrue(try GlooTransport.busyPollPolicy(["TANDEM_GLOO_BUSY_POLL": "1"]))
        XCTAssertFalse(try GlooTransport.busyPollPolicy(["TANDEM_GLOO_BUSY_POLL": "0"]))
        XCTAssertFalse(try GlooTransport.busyPollPolicy([:]))
    }

    /// A spinning wait longer than 100 ms makes the next 64 waits block; then spinning resumes.
    func testBusyPollingBacksOffAfterALongWait() {
        var backoff = GlooTransport.SpinBackoff()
        XCTAssertTrue(backoff.shouldSpin())
        backoff.record(spunFor: .milliseconds(5))
        XCTAssertTrue(backoff.shouldSpin())
        backoff.record(spunFor: .seconds(2))
        for _ in 0..<GlooTransport.SpinBackoff.blockedCalls { XCTAssertFalse(backoff.shouldSpin()) }
        XCTAssertTrue(backoff.shouldSpin())
    }

    func testBadValueNamesTheVariable() {
        XCTAssertThrowsError(try GlooTransport.busyPollPolicy(["TANDEM_GLOO_BUSY_POLL": "yes"])) { error in
            guard case let DistributedError.malformedEnvironment(variable, value, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(variable, "TANDEM_GLOO_BUSY_POLL")
            XCTAssertEqual(value, "yes")
        }
    }
}
