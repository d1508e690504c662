import Foundation
import Glibc
import Synchronization
import TandemTestSupport
import XCTest

/// The result of a spawned process.
struct Spawned {
    var status: Int32
    var signaled: Bool
    var stdout: String
    var stderr: String
    var seconds: Double
}

/// The built `tandem` executable, next to the test bundle.
func tandemExecutable() throws -> String {
    var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tandem").path,
                      Bundle.main.bundleURL.appendingPathComponent("tandem").path,
                      Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("tandem").path]
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    candidates.append(root.appendingPathComponent(".build/debug/tandem").path)
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw XCTSkip("the tandem executable was not built (looked in \(candidates))")
    }
    return found
}

/// The built `tandem-selftest` executable (the distributed tests' worker), next to `tandem`.
func selftestExecutable() throws -> String {
    let path = URL(fileURLWithPath: try tandemExecutable()).deletingLastPathComponent().appendingPathComponent("tandem-selftest").path
    guard FileManager.default.isExecutableFile(atPath: path) else { throw XCTSkip("tandem-selftest was not built (\(path))") }
    return path
}

/// Collected output of one pipe.
final class Sink: Sendable {
    let data = Mutex(Data())
    var text: String { String(decoding: data.withLock { $0 }, as: UTF8.self) }
}

/// Starts processes; `wait` collects their output, killing any still running after `limit`.
final class Launch {
    private var processes: [(Process, Pipe, Pipe, Date)] = []

    func start(_ arguments: [String], environment: [String: String] = [:]) throws {
        let p = Process()
        // `dist-selftest` is the worker in tandem-selftest; everything else is `tandem`.
        p.executableURL = URL(fileURLWithPath: arguments.first == "dist-selftest" ? try selftestExecutable() : try tandemExecutable())
        p.arguments = arguments
        p.environment = childEnvironment(environment, removing: ["TANDEM_DISTRIBUTED_DEBUG"])
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        processes.append((p, out, err, Date()))
    }

    var pids: [Int32] { processes.map { $0.0.processIdentifier } }

    func wait(limit: Double = 30) -> [Spawned] {
        let deadline = Date().addingTimeInterval(limit)
        let outputs = processes.map { _, out, err, _ -> (Sink, Sink, DispatchGroup) in
            let o = Sink(), e = Sink(), g = DispatchGroup()
            for (pipe, sink) in [(out, o), (err, e)] {
                g.enter()
                let handle = pipe.fileHandleForReading
                Thread {
                    let data = handle.readDataToEndOfFile()
                    sink.data.withLock { $0 = data }
                    g.leave()
                }.start()
            }
            return (o, e, g)
        }
        // Poll all processes together so each one's exit time is recorded.
        var ended = [Date?](repeating: nil, count: processes.count)
        while ended.contains(nil) && Date() < deadline {
            for (i, entry) in processes.enumerated() where ended[i] == nil && !entry.0.isRunning { ended[i] = Date() }
            Thread.sleep(forTimeInterval: 0.01)
        }
        for (p, _, _, _) in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        return zip(processes.indices, outputs).map { i, o in
            let (p, _, _, started) = processes[i]
            p.waitUntilExit()
            _ = o.2.wait(timeout: .now() + 5)
            return Spawned(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                           stdout: o.0.text, stderr: o.1.text,
                           seconds: (ended[i] ?? Date()).timeIntervalSince(started))
        }
    }
}

/// Real processes on 127.0.0.1 through Gloo: every collective, the three init methods,
/// dtypes and sizes, and the failure cases.
final class ProcessTests: XCTestCase {
    private func run(_ arguments: [String], limit: Double = 30) throws -> Spawned {
        let l = Launch()
        try l.start(arguments)
        return l.wait(limit: limit)[0]
    }

    private func tandemRun(nproc: Int, _ worker: [String], limit: Double = 30) throws -> Spawned {
        let exe = try selftestExecutable()
        return try run(["run", "--standalone", "--nproc-per-node", String(nproc), "--", exe, "dist-selftest", "--timeout-ms", "5000"] + worker, limit: limit)
    }

    private func assertAllRanksOK(_ r: Spawned, nproc: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)", file: file, line: line)
        for rank in 0..<nproc {
            XCTAssertTrue(r.stdout.contains("[rank \(rank)] dist-selftest rank \(rank)/\(nproc): ok"), r.stdout + r.stderr, file: file, line: line)
        }
    }

    func testEnvInitTwoProcessesEveryCollectiveAndDType() throws {
        for (dtype, count) in [("float32", 1), ("float64", 1000), ("int64", 257)] {
            assertAllRanksOK(try tandemRun(nproc: 2, ["--dtype", dtype, "--count", String(count)]), nproc: 2)
        }
    }

    func testEnvInitFourProcesses() throws {
        assertAllRanksOK(try tandemRun(nproc: 4, ["--dtype", "float32", "--count", "1000"]), nproc: 4)
        assertAllRanksOK(try tandemRun(nproc: 4, ["--dtype", "int64", "--count", "3"]), nproc: 4)
    }

    func testLargeAllReduce() throws {
        // 1M float32 = 4 MB: sum, average and max.
        for op in ["sum", "average", "max"] {
            assertAllRanksOK(try tandemRun(nproc: 2, ["--op", "allreduce", "--reduce-op", op, "--count", "1000000"]), nproc: 2)
        }
        // 512K float64 = 4 MB broadcast and all-gather on 4 processes.
        assertAllRanksOK(try tandemRun(nproc: 4, ["--op", "broadcast", "--dtype", "float64", "--count", "524288"]), nproc: 4)
        assertAllRanksOK(try tandemRun(nproc: 4, ["--op", "allgather", "--dtype", "float64", "--count", "131072"]), nproc: 4)
    }

    func testAllReduce64MB() throws {
        // 16M float32 = 64 MB, the largest size the issue asks for: sum on 2 processes.
        assertAllRanksOK(try tandemRun(nproc: 2, ["--op", "allreduce", "--reduce-op", "sum", "--count", "16777216"], limit: 120), nproc: 2)
    }

    func testBenchAllReducePrintsOneJSONLinePerSize() throws {
        let s = try run(["bench", "allreduce", "--sizes", "1KB,64KB", "--reps", "3", "--json"], limit: 60)
        XCTAssertEqual(s.status, 0, s.stderr)
        let lines = s.stdout.split(separator: "\n").filter { $0.hasPrefix("{") }
        XCTAssertEqual(lines.count, 2, s.stdout + s.stderr)
        for (line, (bytes, size)) in zip(lines, [(1024, "1 KB"), (65536, "64 KB")]) {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
            XCTAssertEqual(object["bytes"] as? Int, bytes)
            XCTAssertEqual(object["size"] as? String, size)
            XCTAssertEqual(object["backend"] as? String, "gloo")
            XCTAssertEqual(object["world"] as? Int, 2)
            XCTAssertGreaterThan(object["median_ms"] as? Double ?? 0, 0)
            XCTAssertGreaterThan(object["gb_per_s"] as? Double ?? 0, 0)
        }
    }

    func testBenchAllReduceOverMPI() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else { throw XCTSkip("mpirun is not installed") }
        let s = try run(["bench", "allreduce", "--backend", "mpi", "--sizes", "4KB", "--reps", "3", "--json"], limit: 60)
        XCTAssertEqual(s.status, 0, s.stderr)
        let line = try XCTUnwrap(s.stdout.split(separator: "\n").first { $0.hasPrefix("{") }, s.stdout + s.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
        XCTAssertEqual(object["backend"] as? String, "mpi")
        XCTAssertEqual(object["bytes"] as? Int, 4096)
    }

    func testAdviseReadsACannedCpuinfo() throws {
        // Two sockets of 4 cores without hyper-threading.
        let blocks = (0..<8).map { "processor\t: \($0)\nphysical id\t: \($0 / 4)\nsiblings\t: 4\ncore id\t\t: \($0 % 4)\ncpu cores\t: 4\n" }
        let path = NSTemporaryDirectory() + "tandem-cpuinfo-\(UUID().uuidString)"
        try blocks.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let s = try run(["advise", "--json", "--cpuinfo", path, "--batch-size", "128"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(s.stdout.utf8)) as? [String: Any] ?? [:]
        let machine = object["machine"] as? [String: Any] ?? [:]
        XCTAssertEqual(machine["sockets"] as? Int, 2)
        XCTAssertEqual(machine["physical_cores"] as? Int, 8)
        XCTAssertEqual(object["processes_per_node"] as? Int, 8)
        XCTAssertEqual(object["num_workers"] as? Int, 7)
        XCTAssertEqual(object["ddp_global_batch"] as? Int, 1024)
        XCTAssertEqual(object["data_parallel_per_replica_batch"] as? Int, 16)
        let text = try run(["advise", "--cpuinfo", path])
        XCTAssertTrue(text.stdout.contains("processes per node      8"), text.stdout)
    }

    func testJoinWithUnevenInputsOnRealProcesses() throws {
        // DDP inside join { } where the ranks have different numbers of batches: no hang, and
        // every rank ends with the same parameters.
        for batches in ["3,5", "0,6,2,5"] {
            let world = batches.split(separator: ",").count
            let r = try tandemRun(nproc: world, ["--op", "join", "--batches", batches], limit: 60)
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            let sums = r.stdout.split(separator: "\n").filter { $0.contains("dist-selftest join rank") }.compactMap { $0.split(separator: " ").last }
            XCTAssertEqual(sums.count, world, r.stdout)
            XCTAssertEqual(Set(sums).count, 1, r.stdout)
        }
    }

    private func direct(world: Int, initMethod: String, extra: [String] = [], environment: [String: String] = [:],
                        perRank: (Int) -> [String] = { _ in [] }) throws -> [Spawned] {
        let l = Launch()
        for r in 0..<world {
            try l.start(["dist-selftest", "--init-method", initMethod, "--rank", String(r), "--world-size", String(world),
                         "--timeout-ms", "5000"] + extra + perRank(r), environment: environment)
        }
        return l.wait(limit: 30)
    }

    func testSpinningReadsGiveTheSameResults() throws {
        // TANDEM_GLOO_BUSY_POLL=1: collectives whose caller waits spin on the synchronous context.
        for (dtype, count) in [("float32", 1000), ("float64", 300_000)] {
            let results = try direct(world: 2, initMethod: "tcp://127.0.0.1:\(freePort())", extra: ["--dtype", dtype, "--count", String(count)],
                                     environment: ["TANDEM_GLOO_BUSY_POLL": "1"])
            for (r, s) in results.enumerated() {
                XCTAssertEqual(s.status, 0, s.stderr)
                XCTAssertTrue(s.stdout.contains("rank \(r)/2: ok"), s.stdout + s.stderr)
            }
        }
    }

    func testTCPInit() throws {
        for world in [2, 4] {
            let results = try direct(world: world, initMethod: "tcp://127.0.0.1:\(freePort())", extra: ["--dtype", "int64", "--count", "100"])
            for (r, s) in results.enumerated() {
                XCTAssertEqual(s.status, 0, s.stderr)
                XCTAssertTrue(s.stdout.contains("rank \(r)/\(world): ok"), s.stdout + s.stderr)
            }
        }
    }

    func testFileInit() throws {
        for world in [2, 4] {
            let path = NSTemporaryDirectory() + "tandem-file-init-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: path) }
            let results = try direct(world: world, initMethod: "file://\(path)", extra: ["--dtype", "float64", "--count", "10"])
            for (r, s) in results.enumerated() {
                XCTAssertEqual(s.status, 0, s.stderr)
                XCTAssertTrue(s.stdout.contains("rank \(r)/\(world): ok"), s.stdout + s.stderr)
            }
        }
    }

    func testKilledRankMakesTheSurvivorFailWithinTheTimeout() throws {
        // Rank 1 SIGKILLs itself in the middle of a series of all-reduces; rank 0 must fail fast,
        // with blocking and with spinning reads (what `tandem run` chooses when cores suffice).
        for busyPoll in ["0", "1"] {
            let results = try direct(world: 2, initMethod: "tcp://127.0.0.1:\(freePort())",
                                     extra: ["--op", "allreduce", "--reduce-op", "sum", "--count", "100000", "--iterations", "100000",
                                             "--timeout-ms", "3000"],
                                     environment: ["TANDEM_GLOO_BUSY_POLL": busyPoll],
                                     perRank: { $0 == 1 ? ["--die-rank", "1", "--die-after", "5"] : [] })
            XCTAssertTrue(results[1].signaled)
            XCTAssertEqual(results[1].status, SIGKILL)
            XCTAssertEqual(results[0].status, 2, results[0].stderr)
            XCTAssertTrue(results[0].stderr.contains("allReduce"), results[0].stderr)
            XCTAssertTrue(results[0].stderr.contains("process group 'default' on rank 0"), results[0].stderr)
            XCTAssertTrue(results[0].stderr.contains("peer rank 1") || results[0].stderr.contains("rank 1"), results[0].stderr)
            XCTAssertLessThan(results[0].seconds, 15)
        }
    }

    func testKilledRankIsNamedOnFourProcesses() throws {
        // Rank 2 dies; the three others name it (the store notices its closed connection).
        let results = try direct(world: 4, initMethod: "tcp://127.0.0.1:\(freePort())",
                                 extra: ["--op", "allreduce", "--reduce-op", "sum", "--count", "10000", "--iterations", "100000",
                                         "--timeout-ms", "3000"],
                                 perRank: { $0 == 2 ? ["--die-rank", "2", "--die-after", "3"] : [] })
        XCTAssertEqual(results[2].status, SIGKILL)
        for r in [0, 1, 3] {
            XCTAssertEqual(results[r].status, 2, results[r].stderr)
            XCTAssertTrue(results[r].stderr.contains("allReduce failed in process group 'default' on rank \(r) (peer rank 2)"), results[r].stderr)
            XCTAssertLessThan(results[r].seconds, 10)
        }
    }

    func testHungRankMakesTheOthersTimeOut() throws {
        // Rank 1 stops answering; rank 0's all-reduce fails after its 1.5 s timeout, naming rank 1,
        // with blocking and with spinning reads.
        for busyPoll in ["0", "1"] {
            let results = try direct(world: 2, initMethod: "tcp://127.0.0.1:\(freePort())",
                                     extra: ["--op", "allreduce", "--reduce-op", "sum", "--count", "10", "--timeout-ms", "1500",
                                             "--hang-rank", "1", "--hang-seconds", "4"],
                                     environment: ["TANDEM_GLOO_BUSY_POLL": busyPoll])
            XCTAssertEqual(results[0].status, 2, results[0].stderr)
            XCTAssertTrue(results[0].stderr.contains("allReduce timed out after 1.5 s in process group 'default' on rank 0, waiting for rank 1"),
                          results[0].stderr)
            XCTAssertLessThan(results[0].seconds, 3.5)
        }
    }

    func testDebugModeReportsMismatchedCollectives() throws {
        // Rank 0 all-reduces while rank 1 broadcasts: by default (the first collectives are
        // compared) and with TANDEM_DISTRIBUTED_DEBUG=DETAIL both report the mismatch at once
        // instead of waiting for the timeout.
        for environment in [[:], ["TANDEM_DISTRIBUTED_DEBUG": "DETAIL"]] {
            let results = try direct(world: 2, initMethod: "tcp://127.0.0.1:\(freePort())", extra: ["--count", "4", "--timeout-ms", "20000"],
                                     environment: environment,
                                     perRank: { $0 == 0 ? ["--op", "allreduce", "--reduce-op", "sum"] : ["--op", "broadcast"] })
            for s in results {
                XCTAssertEqual(s.status, 2, s.stderr)
                XCTAssertTrue(s.stderr.contains("collective mismatch"), s.stderr)
                XCTAssertTrue(s.stderr.contains("rank 0 called '#1 allReduce float32 [4] sum'"), s.stderr)
                XCTAssertTrue(s.stderr.contains("rank 1 called '#1 broadcast float32 [4] root=1'"), s.stderr)
                XCTAssertLessThan(s.seconds, 10)
            }
        }
    }

    func testRunReportsTheDeadRank() throws {
        let r = try tandemRun(nproc: 2, ["--op", "allreduce", "--reduce-op", "sum", "--count", "1000", "--iterations", "100000",
                                         "--die-rank", "1", "--die-after", "3"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("rank 1"), r.stderr)
        XCTAssertTrue(r.stderr.contains("SIGKILL"), r.stderr)
        XCTAssertLessThan(r.seconds, 15)
    }

    func testRunReportsExitCodeAndRestarts() throws {
        // A child that exits 3 on rank 1: reported with its exit code, after one restart.
        let r = try run(["run", "--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "--",
                         "/bin/sh", "-c", "echo hello from $RANK of $WORLD_SIZE local $LOCAL_RANK/$LOCAL_WORLD_SIZE busy-poll $TANDEM_GLOO_BUSY_POLL threads $TANDEM_NUM_THREADS; [ $RANK = 1 ] && exit 3; exit 0"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("[rank 0] hello from 0 of 2 local 0/2"), r.stdout)
        // Ranks spin while waiting when each has a core (unless the caller chose).
        let busyPoll = ProcessInfo.processInfo.environment["TANDEM_GLOO_BUSY_POLL"]
            ?? (ProcessInfo.processInfo.activeProcessorCount >= 2 ? "1" : "0")
        XCTAssertTrue(r.stdout.contains("local 0/2 busy-poll \(busyPoll) threads"), r.stdout)
        XCTAssertTrue(r.stdout.contains("[rank 1] hello from 1 of 2 local 1/2"), r.stdout)
        XCTAssertTrue(r.stderr.contains("restart 1 of 1"), r.stderr)
        XCTAssertTrue(r.stderr.contains("rank 1 (local rank 1"), r.stderr)
        XCTAssertTrue(r.stderr.contains("exited with code 3"), r.stderr)
    }

    func testBadInputsAreTypedErrorsWithoutHanging() throws {
        // Rank ≥ world size.
        var s = try run(["dist-selftest", "--init-method", "tcp://127.0.0.1:\(freePort())", "--rank", "2", "--world-size", "2"])
        XCTAssertEqual(s.status, 2)
        XCTAssertTrue(s.stderr.contains("rank 2 is not below world size 2"), s.stderr)
        // Missing environment variable.
        s = try run(["dist-selftest", "--init-method", "env://"])
        XCTAssertEqual(s.status, 2)
        XCTAssertTrue(s.stderr.contains("RANK is not set"), s.stderr)
        // Unreachable master: a short timeout, then a clear error.
        s = try run(["dist-selftest", "--init-method", "tcp://127.0.0.1:\(freePort())", "--rank", "1", "--world-size", "2", "--timeout-ms", "700"])
        XCTAssertEqual(s.status, 2)
        XCTAssertTrue(s.stderr.contains("cannot reach the rendezvous store"), s.stderr)
        XCTAssertLessThan(s.seconds, 10)
        // Port in use.
        let port = freePort()
        let blocker = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(blocker) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(blocker, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(blocker, 1)
        s = try run(["dist-selftest", "--init-method", "tcp://127.0.0.1:\(port)", "--rank", "0", "--world-size", "2", "--timeout-ms", "700"])
        XCTAssertEqual(s.status, 2)
        XCTAssertTrue(s.stderr.contains("already in use"), s.stderr)
        // A missing rank: the rendezvous names it.
        s = try run(["dist-selftest", "--init-method", "tcp://127.0.0.1:\(freePort())", "--rank", "0", "--world-size", "3", "--timeout-ms", "700"])
        XCTAssertEqual(s.status, 2)
        XCTAssertTrue(s.stderr.contains("rank(s) 1, 2 of 3 did not arrive"), s.stderr)
        // Unknown network interface.
        let l = Launch()
        try l.start(["dist-selftest", "--init-method", "tcp://127.0.0.1:\(freePort())", "--rank", "0", "--world-size", "1"],
                    environment: ["GLOO_SOCKET_IFNAME": "nosuch0"])
        s = l.wait()[0]
        XCTAssertEqual(s.status, 2)
        XCTAssertTrue(s.stderr.contains("'nosuch0' from GLOO_SOCKET_IFNAME does not exist"), s.stderr)
    }

    func testMismatchedWorldSizes() throws {
        let results = try direct(world: 2, initMethod: "tcp://127.0.0.1:\(freePort())", extra: ["--timeout-ms", "1500"],
                                 perRank: { $0 == 1 ? ["--world-size", "3"] : [] })
        XCTAssertTrue(results.allSatisfy { $0.status == 2 }, results.map(\.stderr).joined())
        XCTAssertTrue(results.contains { $0.stderr.contains("mismatched world sizes") }, results.map(\.stderr).joined())
    }

    func testMPIBackendUnderMpirun() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else { throw XCTSkip("mpirun is not installed") }
        let exe = try selftestExecutable()
        for (np, dtype, count) in [(2, "float32", 1000), (4, "int64", 7), (2, "float64", 262_144)] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
            p.arguments = ["--allow-run-as-root", "--oversubscribe", "-np", String(np), exe, "dist-selftest", "--backend", "mpi",
                           "--dtype", dtype, "--count", String(count)]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let reader = Sink(), done = DispatchGroup()
            done.enter()
            Thread {
                let data = out.fileHandleForReading.readDataToEndOfFile()
                reader.data.withLock { $0 = data }
                done.leave()
            }.start()
            let deadline = Date().addingTimeInterval(30)
            while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            if p.isRunning { p.terminate() }
            p.waitUntilExit()
            _ = done.wait(timeout: .now() + 5)
            XCTAssertEqual(p.terminationStatus, 0, reader.text)
            for r in 0..<np { XCTAssertTrue(reader.text.contains("dist-selftest rank \(r)/\(np): ok"), reader.text) }
        }
    }

    func testTwoMachinesInNetworkNamespaces() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("scripts/two_node_netns.sh").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = [script, try tandemExecutable()]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let sink = Sink(), done = DispatchGroup()
        done.enter()
        Thread {
            let data = out.fileHandleForReading.readDataToEndOfFile()
            sink.data.withLock { $0 = data }
            done.leave()
        }.start()
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        _ = done.wait(timeout: .now() + 5)
        if sink.text.contains("SKIP") { throw XCTSkip(sink.text) }
        XCTAssertEqual(p.terminationStatus, 0, sink.text)
        XCTAssertTrue(sink.text.contains("PASS"), sink.text)
    }
}
