import Foundation
import Synchronization
import TandemCore
import TandemDistributed
import XCTest

/// The in-process backend (ranks as threads): every collective, subgroups, failures.
final class InProcessTests: XCTestCase {
    /// Runs `body(rank, group)` on one thread per rank and returns the results in rank order.
    private func onEveryRank<R: Sendable>(_ groups: [any ProcessGroup], _ body: @escaping @Sendable (Int, any ProcessGroup) throws -> R) throws -> [R] {
        let results = Mutex<[Int: Result<R, any Error>]>([:])
        let done = DispatchGroup()
        for (r, g) in groups.enumerated() {
            done.enter()
            Thread {
                let result = Result { try body(r, g) }
                results.withLock { $0[r] = result }
                done.leave()
            }.start()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        return try results.withLock { all in try (0..<groups.count).map { try all[$0]!.get() } }
    }

    func testEveryCollectiveOnFourRanks() throws {
        let w = 4
        let groups = try InProcessGroup.makeWorld(worldSize: w, timeout: .seconds(10))
        for dtype in [DType.float32, .float64, .int64] {
            let results = try onEveryRank(groups) { r, g -> [[Double]] in
                let t = Tensor((0..<5).map { Double($0 + r + 1) }, shape: [5], dtype: dtype)
                var out = [[Double]]()
                out.append(try values(g.allReduce(t, op: .sum)))
                out.append(try values(g.allReduce(t, op: .max)))
                out.append(try values(g.allReduce(t, op: .average)))
                out.append(try values(g.allReduce(t, op: .product)))
                out.append(try values(g.broadcast(t, root: 2)))
                out.append(try values(Tensor.cat(g.allGather(t), axis: 0)))
                try g.barrier()
                out.append(try values(g.reduce(t, root: 1, op: .min)))
                let gathered = try g.gather(t, root: 3)
                out.append(gathered.isEmpty ? [] : try values(Tensor.cat(gathered, axis: 0)))
                let list = r == 0 ? (0..<w).map { Tensor([Double($0 * 10)], shape: [1], dtype: dtype) } : []
                out.append(try values(g.scatter(Tensor.zeros([1], dtype: dtype), scatterList: list, root: 0)))
                out.append(try values(g.reduceScatter((0..<w).map { Tensor([Double($0 + r)], shape: [1], dtype: dtype) })))
                let sent = g.sendAsync(t, to: (r + 1) % w, tag: 3, timeout: nil)
                out.append(try values(g.recv(Tensor.zeros([5], dtype: dtype), from: (r + w - 1) % w, tag: 3)))
                try sent.wait()
                return out
            }
            for (r, out) in results.enumerated() {
                let per = (0..<w).map { q in (0..<5).map { Double($0 + q + 1) } }
                let sum = (0..<5).map { i in per.map { $0[i] }.reduce(0, +) }
                XCTAssertEqual(out[0], sum)
                XCTAssertEqual(out[1], per[3])
                XCTAssertEqual(out[2], sum.map { dtype == .int64 ? Double(Int($0) / w) : $0 / Double(w) })
                XCTAssertEqual(out[3], (0..<5).map { i in per.map { $0[i] }.reduce(1, *) })
                XCTAssertEqual(out[4], per[2])
                XCTAssertEqual(out[5], per.flatMap { $0 })
                XCTAssertEqual(out[6], r == 1 ? per[0] : per[r])
                XCTAssertEqual(out[7], r == 3 ? per.flatMap { $0 } : [])
                XCTAssertEqual(out[8], [Double(r * 10)])
                XCTAssertEqual(out[9], [Double((0..<w).map { r + $0 }.reduce(0, +))])
                XCTAssertEqual(out[10], per[(r + w - 1) % w])
            }
        }
    }

    func testAsyncWorkOverlapsAndKeepsOrder() throws {
        let groups = try InProcessGroup.makeWorld(worldSize: 2, timeout: .seconds(10))
        // Issue several async all-reduces from one thread per rank; results come back in order.
        let results = try onEveryRank(groups) { r, g -> [Double] in
            let works = (0..<5).map { k in g.allReduceAsync(Tensor([Double(k + r)], shape: [1], dtype: .float64)) }
            return try works.map { try values($0.wait())[0] }
        }
        XCTAssertEqual(results[0], [1, 3, 5, 7, 9])
        XCTAssertEqual(results[1], [1, 3, 5, 7, 9])
    }

    func testMissingRankTimesOutNamingIt() throws {
        let groups = try InProcessGroup.makeWorld(worldSize: 3, timeout: .seconds(10))
        let start = ContinuousClock.now
        let w0 = groups[0].allReduceAsync(Tensor([1.0], shape: [1]), op: .sum, timeout: .milliseconds(300))
        let w1 = groups[1].allReduceAsync(Tensor([1.0], shape: [1]), op: .sum, timeout: .milliseconds(300))
        for w in [w0, w1] {
            XCTAssertThrowsError(try w.wait()) { error in
                guard case let DistributedError.timeout(op, group, _, peer, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(op, "allReduce")
                XCTAssertEqual(group, "default")
                XCTAssertEqual(peer, 2)
                XCTAssertTrue("\(error)".contains("rank 2"))
            }
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(3))
        // The group is broken afterwards.
        XCTAssertThrowsError(try groups[0].barrier()) { error in
            guard case DistributedError.groupBroken = error else { return XCTFail("\(error)") }
        }
    }

    func testSubgroups() throws {
        let groups = try InProcessGroup.makeWorld(worldSize: 4, timeout: .seconds(10))
        let results = try onEveryRank(groups) { r, g -> [Double] in
            guard let sub = try g.newGroup(ranks: [1, 3]) else { return [] }
            XCTAssertEqual(sub.worldSize, 2)
            return try values(sub.allReduce(Tensor([Double(r)], shape: [1])))
        }
        XCTAssertEqual(results, [[], [4], [], [4]])
    }

    func testBadArgumentsAreTypedErrors() throws {
        let groups = try InProcessGroup.makeWorld(worldSize: 1)
        XCTAssertThrowsError(try groups[0].broadcast(Tensor([1.0]), root: 1)) { error in
            guard case DistributedError.invalidArgument = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("world size 1"))
        }
        XCTAssertThrowsError(try groups[0].allReduce(Tensor.zeros([2], dtype: .int32))) { error in
            guard case DistributedError.invalidArgument = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try InProcessGroup.makeWorld(worldSize: 0))
    }

    func testDebugModeReportsMismatchedCollectives() throws {
        setenv("TANDEM_DISTRIBUTED_DEBUG", "DETAIL", 1)
        defer { unsetenv("TANDEM_DISTRIBUTED_DEBUG") }
        let groups = try InProcessGroup.makeWorld(worldSize: 2, timeout: .seconds(5))
        let a = groups[0].allReduceAsync(Tensor.zeros([3]), op: .sum, timeout: nil)
        let b = groups[1].broadcastAsync(Tensor.zeros([4]), root: 0, timeout: nil)
        for w in [a] {
            XCTAssertThrowsError(try w.wait()) { XCTAssertTrue("\($0)".contains("collective mismatch"), "\($0)") }
        }
        XCTAssertThrowsError(try b.wait())
    }
}


/// A tensor's elements as doubles (float32, float64, int64).
func values(_ t: Tensor) throws -> [Double] {
    switch t.dtype {
    case .float32: return try t.withUnsafeBufferPointer(as: Float.self) { $0.map(Double.init) }
    case .float64: return try t.withUnsafeBufferPointer(as: Double.self) { Array($0) }
    default: return try t.withUnsafeBufferPointer(as: Int64.self) { $0.map(Double.init) }
    }
}
