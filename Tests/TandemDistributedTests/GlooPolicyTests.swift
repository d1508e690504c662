@testable import TandemDistributed
import XCTest

/// When a rank that waits for its collective spins on its sockets (no processes).
final class GlooPolicyTests: XCTestCase {
    func testBusyPollFollowsTheVariableThenTheProcessesPerCore() throws {
        XCTAssertTrue(try GlooTransport.busyPollPolicy(["TANDEM_GLOO_BUSY_POLL": "1", "LOCAL_WORLD_SIZE": "8"], cores: 2))
        XCTAssertFalse(try GlooTransport.busyPollPolicy(["TANDEM_GLOO_BUSY_POLL": "0", "LOCAL_WORLD_SIZE": "1"], cores: 2))
        XCTAssertTrue(try GlooTransport.busyPollPolicy(["LOCAL_WORLD_SIZE": "2"], cores: 2))
        XCTAssertFalse(try GlooTransport.busyPollPolicy(["LOCAL_WORLD_SIZE": "4"], cores: 2))
        XCTAssertFalse(try GlooTransport.busyPollPolicy([:], cores: 2))
    }

    func testBadValueNamesTheVariable() {
        XCTAssertThrowsError(try GlooTransport.busyPollPolicy(["TANDEM_GLOO_BUSY_POLL": "yes"], cores: 2)) { error in
            guard case let DistributedError.malformedEnvironment(variable, value, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(variable, "TANDEM_GLOO_BUSY_POLL")
            XCTAssertEqual(value, "yes")
        }
    }
}
