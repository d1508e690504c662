import Foundation
import Testing
@testable import TandemCore
import TandemTestSupport

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
        var mutator = Mutator(seed: 0xfeed)
        var decoded = 0, refused = 0
        for round in 0..<2000 {
            let bytes = mutator.mutate([UInt8](valid), round: round, randomEvery: 5, edits: 6,
                                       alphabet: Array("0123456789-[]{}\",:e".utf8), protectedPrefix: 8)
            do { _ = try SafeTensors.decode(Data(bytes), path: "fuzz"); decoded += 1 } catch is SafeTensors.Error { refused += 1 }
        }
        #expect(decoded + refused == 2000 && refused > 0 && decoded > 0)
    }
}
