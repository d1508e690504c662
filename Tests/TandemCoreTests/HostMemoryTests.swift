import Testing
@testable import TandemCore

/// Large blocks are put on huge pages (advised and collapsed in place): that must never change
/// what any block holds, its own or its neighbours' on the same 2 MB pages.
@Suite struct HostMemoryTests {
    @Test func hugePagesSettingTakesZeroOrOne() throws {
        #expect(try HostMemory.hugePagesPolicy([:]))
        #expect(try HostMemory.hugePagesPolicy(["TANDEM_HUGE_PAGES": "1"]))
        #expect(try !HostMemory.hugePagesPolicy(["TANDEM_HUGE_PAGES": "0"]))
        for bad in ["off", "yes", "", " 1"] {
            do {
                _ = try HostMemory.hugePagesPolicy(["TANDEM_HUGE_PAGES": bad])
                Issue.record("'\(bad)' was accepted")
            } catch let TensorError.invalidArgument(op, message) {
                #expect(op == "TANDEM_HUGE_PAGES" && message.contains("'\(bad)'") && message.contains("0") && message.contains("1"))
            }
        }
        #expect(throws: TensorError.self) { try Tandem.checkMemoryEnvironment(["TANDEM_HUGE_PAGES": "off"]) }
    }

    @Test func largeBlocksAreAlignedAndHoldWhatIsWritten() {
        for byteCount in [HostMemory.hugePageThreshold, 3 << 20, (5 << 20) + 12_345] {
            let block = HostMemory.allocate(byteCount: byteCount)
            defer { HostMemory.deallocate(block) }
            #expect(Int(bitPattern: block) % 64 == 0)
            let bytes = block.bindMemory(to: UInt8.self, capacity: byteCount)
            for i in 0..<byteCount { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
            var mismatches = 0
            for i in 0..<byteCount where bytes[i] != UInt8(truncatingIfNeeded: i &* 31 &+ 7) { mismatches += 1 }
            #expect(mismatches == 0)
        }
    }

    @Test func tensorsKeepTheirValuesWhileNewBlocksCollapseTheirPages() {
        // Small and large tensors interleaved, then more large blocks (some reusing freed
        // space between them), each of which may collapse pages the earlier tensors live on.
        var kept: [(Tensor, Float)] = []
        for i in 0..<12 {
            let count = i.isMultiple(of: 2) ? 300_000 : 1_000  // 1.2 MB or 4 KB
            let value = Float(i) + 0.25
            kept.append((Tensor.full([count], Double(value)), value))
            if i.isMultiple(of: 3) { _ = Tensor.zeros([400_000]) }  // freed at once: a hole to reuse
        }
        var fresh: [Tensor] = []
        for j in 0..<6 { fresh.append(Tensor.full([350_000 + j * 50_000], -1)) }
        for (tensor, value) in kept {
            let values = tensor.toFloatArray()
            #expect(values.allSatisfy { $0 == value })
        }
        for tensor in fresh { #expect(tensor.toFloatArray().allSatisfy { $0 == -1 }) }
    }
}
