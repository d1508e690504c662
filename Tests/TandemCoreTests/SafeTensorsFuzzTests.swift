import Foundation
import Testing
@testable import TandemCore

/// Hostile safetensors files give `SafeTensors.Error`, never a trap.
@Suite struct SafeTensorsFuzzTests {
    /// A file whose header declares `shape` for an entry of `bytes` data bytes.
    private func file(shape: String, bytes: Int) -> Data {
        let header = Array(#"{"w":{"dtype":"F32","shape":\#(shape),"data_offsets":[0,\#(bytes)]}}"#.utf8)
        var data = Data((0..<8).map { UInt8(truncatingIfNeeded: header.count >> (8 * $0)) })
        data.append(contentsOf: header)
        data.append(contentsOf: [UInt8](repeating: 0, count: bytes))
        return data
    }

    /// A shape of [2^40, 2^40] overflowed `Shape.count` (a trap); negative sizes too.
    @Test func overflowingShapesAreTypedErrors() {
        for shape in ["[1099511627776,1099511627776]", "[-4,-1]", "[4611686018427387904,4]"] {
            #expect(throws: SafeTensors.Error.self, "\(shape)") { try SafeTensors.decode(file(shape: shape, bytes: 16), path: "x") }
        }
        #expect(throws: Never.self) { try SafeTensors.decode(file(shape: "[2,2]", bytes: 16)) }
    }

    /// 2,000 random and mutated files (bounded, well under a second): each decodes or throws
    /// `SafeTensors.Error`.
    @Test func fuzzedFilesDecodeOrThrow() throws {
        let valid = try SafeTensors.encode([("a", Tensor.ones([3, 2])), ("b", Tensor(int64: [1, 2, 3]))])
        var seed: UInt64 = 0xfeed
        func next(_ bound: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(seed >> 33) % Swift.max(bound, 1)
        }
        var decoded = 0, refused = 0
        for round in 0..<2000 {
            var bytes = [UInt8](valid)
            if round % 5 == 0 {
                bytes = (0..<next(64)).map { _ in UInt8(next(256)) }
            } else {
                for _ in 0...next(6) {
                    switch next(4) {
                    case 0 where !bytes.isEmpty: bytes[next(bytes.count)] = UInt8(next(256))
                    case 1: bytes.insert(UInt8(next(256)), at: next(bytes.count + 1))
                    case 2 where !bytes.isEmpty: bytes.remove(at: next(bytes.count))
                    default: if bytes.count > 8 { bytes[8 + next(bytes.count - 8)] = Array("0123456789-[]{}\",:e".utf8)[next(19)] }
                    }
                }
            }
            do { _ = try SafeTensors.decode(Data(bytes), path: "fuzz"); decoded += 1 } catch is SafeTensors.Error { refused += 1 }
        }
        #expect(decoded + refused == 2000 && refused > 0 && decoded > 0)
    }
}
