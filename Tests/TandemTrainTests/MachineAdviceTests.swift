import Foundation
import Testing
import TandemTrain

/// `tandem advise`'s parsing and rules, on canned /proc texts.
@Suite struct MachineAdviceTests {
    /// The seed's example machine: 2 physical CPUs × 10 cores, hyper-threading (40 logical CPUs).
    static func twoSocketCpuinfo() -> String {
        var blocks: [String] = []
        for processor in 0..<40 {
            let socket = (processor / 10) % 2, core = processor % 10
            blocks.append("""
                processor\t: \(processor)
                vendor_id\t: GenuineIntel
                model name\t: Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz
                physical id\t: \(socket)
                siblings\t: 20
                core id\t\t: \(core)
                cpu cores\t: 10
                flags\t\t: fpu vme de pse tsc msr
                """)
        }
        return blocks.joined(separator: "\n\n") + "\n"
    }

    static let twoCoreCpuinfo = """
        processor\t: 0
        model name\t: AMD EPYC
        physical id\t: 0
        siblings\t: 2
        core id\t\t: 0
        cpu cores\t: 2

        processor\t: 1
        model name\t: AMD EPYC
        physical id\t: 0
        siblings\t: 2
        core id\t\t: 1
        cpu cores\t: 2

        """

    static let meminfo = """
        MemTotal:       65842448 kB
        MemFree:        10000000 kB
        MemAvailable:   50331648 kB
        SwapTotal:       8388604 kB
        SwapFree:        8388604 kB
        """

    @Test func parsesTheSeedsTwoSocketMachine() {
        let cpu = CPUTopology.parse(cpuinfo: Self.twoSocketCpuinfo())
        #expect(cpu.logicalCPUs == 40)
        #expect(cpu.sockets == 2)
        #expect(cpu.coresPerSocket == 10)
        #expect(cpu.siblingsPerSocket == 20)
        #expect(cpu.physicalCores == 20)
        #expect(cpu.threadsPerCore == 2)
        #expect(cpu.modelName == "Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz")
    }

    @Test func parsesMeminfo() {
        let m = MemoryInfo.parse(meminfo: Self.meminfo)
        #expect(m.totalBytes == 65842448 * 1024)
        #expect(m.availableBytes == 50331648 * 1024)
        #expect(m.swapUsedBytes == 0)
        let swapping = MemoryInfo.parse(meminfo: "MemTotal: 1000 kB\nMemFree: 100 kB\nSwapTotal: 1000 kB\nSwapFree: 400 kB\n")
        #expect(swapping.availableBytes == 100 * 1024)
        #expect(swapping.swapUsedBytes == 600 * 1024)
    }

    @Test func missingFieldsFallBackToProcessorCount() {
        // Some virtual machines and ARM kernels print neither physical id nor core id.
        let cpu = CPUTopology.parse(cpuinfo: "processor : 0\nBogoMIPS : 50\n\nprocessor : 1\n\nprocessor : 2\n\nprocessor : 3\n")
        #expect(cpu.logicalCPUs == 4)
        #expect(cpu.sockets == 1)
        #expect(cpu.physicalCores == 4)
        #expect(cpu.coresPerSocket == 4)
    }

    @Test func adviceForTheTwoSocketMachine() {
        let advice = MachineAdvice(cpu: .parse(cpuinfo: Self.twoSocketCpuinfo()), memory: .parse(meminfo: Self.meminfo), batchSize: 64)
        #expect(advice.cores == 20)
        #expect(advice.processesPerNode == 5)         // one per 4 cores beyond 8 cores
        #expect(advice.threadsPerProcess == 4)
        #expect(advice.numWorkersSingleProcess == 19) // cores − 1 (48 GiB available allows more)
        #expect(advice.numWorkersPerDDPProcess == 3)  // 20 / 5 − 1
        #expect(!advice.pinMemory)                     // no accelerator
        #expect(advice.dataParallelPerReplicaBatch == 12)
        #expect(advice.ddpGlobalBatch == 320)
        #expect(advice.ddpPerProcessBatchForSameGlobal == 12)
        #expect(advice.reasons.count == 6)
        let json = advice.jsonObject
        #expect(json["processes_per_node"] as? Int == 5)
        #expect(json["pin_memory"] as? Bool == false)
        #expect((json["machine"] as? [String: Any])?["sockets"] as? Int == 2)
        #expect(JSONSerialization.isValidJSONObject(json))
    }

    @Test func adviceForTwoCoresAndLimits() {
        let cpu = CPUTopology.parse(cpuinfo: Self.twoCoreCpuinfo)
        #expect(cpu.physicalCores == 2 && cpu.sockets == 1 && cpu.coresPerSocket == 2)
        let advice = MachineAdvice(cpu: cpu, memory: .parse(meminfo: Self.meminfo))
        #expect(advice.processesPerNode == 2)
        #expect(advice.threadsPerProcess == 1)
        #expect(advice.numWorkersSingleProcess == 1)
        #expect(advice.numWorkersPerDDPProcess == 0)
        // Affinity: 4 of 40 logical CPUs are 2 physical cores.
        let limited = MachineAdvice(cpu: .parse(cpuinfo: Self.twoSocketCpuinfo()), memory: .parse(meminfo: Self.meminfo), usableCPUs: 4)
        #expect(limited.cores == 2)
        // Tight memory: at most one worker per GiB available.
        let tight = MachineAdvice(cpu: .parse(cpuinfo: Self.twoSocketCpuinfo()),
                                  memory: .parse(meminfo: "MemTotal: 8388608 kB\nMemAvailable: 3145728 kB\n"))
        #expect(tight.numWorkersSingleProcess == 3)
    }

    @Test func pinMemoryFollowsTheSeedWithAnAccelerator() {
        let cpu = CPUTopology.parse(cpuinfo: Self.twoCoreCpuinfo)
        let gib = 1 << 30
        let plenty = MachineAdvice(cpu: cpu, memory: .parse(meminfo: Self.meminfo), accelerators: 2, acceleratorMemoryBytes: 16 * gib)
        #expect(!plenty.pinMemory)                    // 62.8 GiB < 2 × (2 × 16 GiB)
        let enough = MachineAdvice(cpu: cpu, memory: .parse(meminfo: Self.meminfo), accelerators: 1, acceleratorMemoryBytes: 16 * gib)
        #expect(enough.pinMemory)
        #expect(enough.processesPerNode == 1)
        let swapping = MachineAdvice(cpu: cpu, memory: .parse(meminfo: "MemTotal: 67108864 kB\nMemAvailable: 1000 kB\nSwapTotal: 1000000 kB\nSwapFree: 100 kB\n"),
                                     accelerators: 1, acceleratorMemoryBytes: 8 * gib)
        #expect(!swapping.pinMemory)
    }

    @Test func readsThisMachine() throws {
        let advice = try MachineAdvice.forThisMachine()
        #expect(advice.cpu.logicalCPUs >= 1)
        #expect(advice.processesPerNode >= 1)
        #expect(advice.memory.totalBytes > 0)
    }
}
