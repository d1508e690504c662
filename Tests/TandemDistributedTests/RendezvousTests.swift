import Foundation
import TandemCore
import TandemDistributed
import TandemTestSupport
import XCTest

/// Init-method parsing and environment validation (no processes).
final class RendezvousTests: XCTestCase {
    let env = ["RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"]

    func testEnvironment() throws {
        let info = try resolveRendezvous(initMethod: "env://", rank: nil, worldSize: nil, environment: env)
        XCTAssertEqual(info, RendezvousInfo(rank: 1, worldSize: 4, kind: "tcp", host: "127.0.0.1", port: 29500))
        var withLocal = env
        withLocal["LOCAL_RANK"] = "1"
        XCTAssertEqual(try resolveRendezvous(initMethod: "env://", rank: nil, worldSize: nil, environment: withLocal).localRank, 1)
        withLocal["LOCAL_RANK"] = "one"
        XCTAssertThrowsError(try resolveRendezvous(initMethod: "env://", rank: nil, worldSize: nil, environment: withLocal)) { error in
            guard case let DistributedError.malformedEnvironment(variable, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(variable, "LOCAL_RANK")
        }
        // Slurm's variables stand in for RANK/WORLD_SIZE.
        let slurm = try resolveRendezvous(initMethod: "env://", rank: nil, worldSize: nil,
                                          environment: ["SLURM_PROCID": "2", "SLURM_NTASKS": "3", "MASTER_ADDR": "h", "MASTER_PORT": "1"])
        XCTAssertEqual(slurm.rank, 2)
        XCTAssertEqual(slurm.worldSize, 3)
    }

    func testMissingAndMalformedVariables() {
        for missing in ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"] {
            var e = env
            e[missing] = nil
            XCTAssertThrowsError(try resolveRendezvous(initMethod: "env://", rank: nil, worldSize: nil, environment: e)) { error in
                guard case let DistributedError.missingEnvironment(variable, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(variable, missing)
                XCTAssertTrue("\(error)".contains(missing))
            }
        }
        var e = env
        e["MASTER_PORT"] = "http"
        XCTAssertThrowsError(try resolveRendezvous(initMethod: "env://", rank: nil, worldSize: nil, environment: e)) { error in
            guard case let DistributedError.malformedEnvironment(variable, value, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(variable, "MASTER_PORT")
            XCTAssertEqual(value, "http")
        }
        e = env
        e["RANK"] = "-1"
        XCTAssertThrowsError(try resolveRendezvous(initMethod: "env://", rank: nil, worldSize: nil, environment: e))
    }

    func testRankAtLeastWorldSize() {
        XCTAssertThrowsError(try resolveRendezvous(initMethod: "tcp://127.0.0.1:1234", rank: 4, worldSize: 4, environment: [:])) { error in
            guard case DistributedError.invalidArgument = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("rank 4 is not below world size 4"), "\(error)")
        }
    }

    func testInitMethods() throws {
        XCTAssertEqual(try resolveRendezvous(initMethod: "tcp://10.0.0.1:29501", rank: 0, worldSize: 2, environment: [:]),
                       RendezvousInfo(rank: 0, worldSize: 2, kind: "tcp", host: "10.0.0.1", port: 29501))
        XCTAssertEqual(try resolveRendezvous(initMethod: "file:///tmp/x", rank: 0, worldSize: 2, environment: [:]),
                       RendezvousInfo(rank: 0, worldSize: 2, kind: "file", path: "/tmp/x"))
        for bad in ["tcp://host", "tcp://:12", "tcp://h:99999", "file://relative", "udp://x:1"] {
            XCTAssertThrowsError(try resolveRendezvous(initMethod: bad, rank: 0, worldSize: 2, environment: [:])) { error in
                guard case DistributedError.invalidInitMethod = error else { return XCTFail("\(bad): \(error)") }
            }
        }
        // tcp:// without a rank and no RANK in the environment.
        XCTAssertThrowsError(try resolveRendezvous(initMethod: "tcp://h:1", rank: nil, worldSize: 2, environment: [:]))
    }

    func testUnknownInterface() {
        XCTAssertThrowsError(try socketInterface(environment: ["GLOO_SOCKET_IFNAME": "nosuch0"])) { error in
            guard case let DistributedError.interfaceNotFound(name, variable, available) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "nosuch0")
            XCTAssertEqual(variable, "GLOO_SOCKET_IFNAME")
            XCTAssertTrue(available.contains("lo"))
        }
        XCTAssertEqual(try socketInterface(environment: ["TANDEM_SOCKET_IFNAME": "lo"]), "lo")
        XCTAssertNil(try socketInterface(environment: [:]))
    }

    func testSingleRankGlooGroup() throws {
        let pg = try initProcessGroup(initMethod: "tcp://127.0.0.1:\(freePort())", rank: 0, worldSize: 1, timeout: .seconds(5))
        XCTAssertEqual(pg.backendName, "gloo")
        XCTAssertEqual(try values(pg.allReduce(Tensor([1, 2, 3] as [Float]))), [1, 2, 3])
        pg.destroy()
        XCTAssertThrowsError(try pg.barrier())
    }
}
