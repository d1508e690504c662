import Foundation
import TandemCore
import TandemDistributed
import XCTest

final class InProcessTests: XCTestCase {
    func testPlaceholder() throws {}
}
