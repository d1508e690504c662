import ArgumentParser
import Foundation
import TandemCore
import TandemTrain

/// `tandem advise`: reads the machine (/proc/cpuinfo, /proc/meminfo, accelerators) and prints
/// the seed's recommendations: numWorkers, pinMemory, processes per node, threads per process,
/// and the batch size under DataParallel and DDP (see `MachineAdvice` for the rules); then the
/// instruction sets found and the kernel routes they select (`KernelRoutes`).
struct AdviseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "advise", abstract: "Recommend workers, pinMemory, processes and threads for this machine.")

    @Option(help: "The batch size to work the advice out for.") var batchSize: Int = 64
    @Option(help: "Read this file instead of /proc/cpuinfo.") var cpuinfo: String = "/proc/cpuinfo"
    @Option(help: "Read this file instead of /proc/meminfo.") var meminfo: String = "/proc/meminfo"
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    }

    func run() throws {
        let advice: MachineAdvice
        do {
            advice = try MachineAdvice.forThisMachine(batchSize: batchSize, cpuinfoPath: cpuinfo, meminfoPath: meminfo)
        } catch {
            throw ValidationError("cannot read \(cpuinfo) or \(meminfo): \(error.localizedDescription)")
        }
        let kernels = KernelRoutes.current
        if json {
            var object = advice.jsonObject
            object["kernels"] = [
                "cpu_flags": kernels.cpuFlags, "onednn_isa": kernels.oneDNNISA, "openblas_core": kernels.openBLASCore,
                "native_bfloat16": kernels.nativeBFloat16,
                "routes": Dictionary(uniqueKeysWithValues: kernels.routes.map { ($0.name, $0.choice) }),
            ] as [String: Any]
            try JSONValues.printLine(object)
            return
        }
        let gib = Double(1 << 30)
        let cpu = advice.cpu
        print("machine: \(cpu.modelName ?? "CPU"): \(cpu.sockets) socket(s) × \(cpu.coresPerSocket) core(s) = \(cpu.physicalCores) physical core(s), "
            + "\(cpu.logicalCPUs) logical CPU(s) (\(advice.usableCPUs) usable); "
            + String(format: "memory %.1f GiB (%.1f GiB available), swap in use %.1f GiB; ",
                     Double(advice.memory.totalBytes) / gib, Double(advice.memory.availableBytes) / gib, Double(advice.memory.swapUsedBytes) / gib)
            + "\(advice.accelerators) accelerator(s)")
        print("")
        print("  processes per node      \(advice.processesPerNode)    (tandem run --nproc-per-node \(advice.processesPerNode))")
        print("  threads per process     \(advice.threadsPerProcess)    (TANDEM_NUM_THREADS, tandem train --threads)")
        print("  numWorkers              \(advice.numWorkersSingleProcess)    (one process or DataParallel)")
        print("  numWorkers per process  \(advice.numWorkersPerDDPProcess)    (DDP)")
        print("  pinMemory               \(advice.pinMemory)")
        print("  batch size              DataParallel: --batch-size \(advice.batchSize) is global, \(advice.dataParallelPerReplicaBatch) per replica; "
            + "DDP: per process, \(advice.batchSize) × \(advice.processesPerNode) = \(advice.ddpGlobalBatch) global "
            + "(\(advice.ddpPerProcessBatchForSameGlobal) per process keeps \(advice.batchSize))")
        print("")
        print("why:")
        for reason in advice.reasons { print("  - \(reason)") }
        print("")
        print("kernels: CPU \(kernels.cpuFlags.joined(separator: " ")); oneDNN \(kernels.oneDNNISA) (ONEDNN_MAX_CPU_ISA), "
            + "OpenBLAS \(kernels.openBLASCore) (OPENBLAS_CORETYPE)")
        for route in kernels.routes { print("  \(route.name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(route.choice)") }
    }
}
