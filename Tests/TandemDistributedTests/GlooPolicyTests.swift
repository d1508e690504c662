@testable import TandemDistributed
import XCTest

/// When a rank that waits for its collective spins on its sockets (no processes).
final class GlooPolicyTests: XCTestCase {
    func testBusyPollIsOptIn() throws {
        XCTAssertTrue(try GlooTransport.busyPollPolicy(["TANDEM_GLOO_BUSY_POLL": "1"]))
        XCTAssertFalse(try GlooTransport.busyPollPolicy(["TANDEM_GLOO_BUSY_POLL": "0"]))
        XCTAssertFalse(try GlooTransport.busyPollPolicy([:]))
    }

    func testBadValueNamesTheVariable() {
        XCTAssertThrowsError(try GlooTransport.busyPollPolicy(["TANDEM_GLOO_BUSY_POLL": "yes"])) { error in
            guard case let DistributedError.malformedEnvironment(variable, value, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(variable, "TANDEM_GLOO_BUSY_POLL")
            XCTAssertEqual(value, "yes")
        }
    }
}
