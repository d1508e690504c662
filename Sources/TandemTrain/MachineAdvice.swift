import Foundation

/// The CPUs of a machine as `/proc/cpuinfo` describes them, counted the way the seed does:
/// sockets are the distinct `physical id`s, cores per socket the `cpu cores` field, and
/// `siblings` the logical CPUs per socket.
public struct CPUTopology: Equatable, Sendable {
    /// Logical CPUs: the `processor` entries.
    public var logicalCPUs: Int
    /// Physical packages: distinct `physical id`s (1 when the field is missing).
    public var sockets: Int
    /// Cores per socket (`cpu cores`; when missing, logical CPUs ÷ sockets).
    public var coresPerSocket: Int
    /// Logical CPUs per socket (`siblings`; when missing, logical CPUs ÷ sockets).
    public var siblingsPerSocket: Int
    /// Physical cores: distinct (`physical id`, `core id`) pairs, else sockets × cores per socket.
    public var physicalCores: Int
    /// The first `model name`, if any.
    public var modelName: String?

    /// Hardware threads per core (2 with hyper-threading / SMT).
    public var threadsPerCore: Int { Swift.max(1, logicalCPUs / Swift.max(1, physicalCores)) }

    /// Parses the text of `/proc/cpuinfo` (blocks separated by blank lines, `key : value` lines).
    public static func parse(cpuinfo text: String) -> CPUTopology {
        var processors = 0
        var packages = Set<String>(), cores = Set<String>()
        var cpuCores: Int?, siblings: Int?, model: String?
        var package: String?
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            guard let colon = rawLine.firstIndex(of: ":") else { continue }
            let key = rawLine[..<colon].trimmingCharacters(in: .whitespaces)
            let value = rawLine[rawLine.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "processor":
                processors += 1
                package = nil
            case "physical id":
                packages.insert(value)
                package = value
            case "core id":
                cores.insert("\(package ?? "0"):\(value)")
            case "cpu cores":
                cpuCores = cpuCores ?? Int(value)
            case "siblings":
                siblings = siblings ?? Int(value)
            case "model name":
                model = model ?? value
            default:
                break
            }
        }
        let logical = Swift.max(1, processors)
        let sockets = Swift.max(1, packages.count)
        let perSocket = cpuCores ?? Swift.max(1, logical / sockets)
        let physical = !cores.isEmpty ? cores.count : (cpuCores != nil ? sockets * perSocket : logical)
        return CPUTopology(logicalCPUs: logical, sockets: sockets, coresPerSocket: perSocket,
                           siblingsPerSocket: siblings ?? Swift.max(1, logical / sockets), physicalCores: physical, modelName: model)
    }
}

/// Memory as `/proc/meminfo` describes it, in bytes.
public struct MemoryInfo: Equatable, Sendable {
    /// `MemTotal`.
    public var totalBytes: Int
    /// `MemAvailable` (`MemFree` on old kernels).
    public var availableBytes: Int
    /// `SwapTotal`.
    public var swapTotalBytes: Int
    /// `SwapFree`.
    public var swapFreeBytes: Int

    /// Swap in use: the seed's sign that the system swaps.
    public var swapUsedBytes: Int { Swift.max(0, swapTotalBytes - swapFreeBytes) }

    /// Parses the text of `/proc/meminfo` (`Key:   value kB` lines).
    public static func parse(meminfo text: String) -> MemoryInfo {
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let fields = line[line.index(after: colon)...].split(separator: " ")
            guard let number = fields.first.flatMap({ Int($0) }) else { continue }
            let unit = fields.count > 1 && fields[1].lowercased() == "kb" ? 1024 : 1
            values[String(line[..<colon])] = number * unit
        }
        let total = values["MemTotal"] ?? 0
        return MemoryInfo(totalBytes: total, availableBytes: values["MemAvailable"] ?? values["MemFree"] ?? total,
                          swapTotalBytes: values["SwapTotal"] ?? 0, swapFreeBytes: values["SwapFree"] ?? values["SwapTotal"] ?? 0)
    }
}

/// The seed's recommendations for one machine: DataLoader workers, `pinMemory`, processes per
/// node and threads per process, and what the batch size means under DataParallel and DDP.
///
/// The rules (each also given as a sentence in `reasons`):
/// - cores: physical cores, limited to the CPUs this process may use (affinity, cgroups);
/// - processes per node: one per accelerator when there are any; on CPU one per core up to
///   8 cores (DDP's data parallelism scales better than intra-op threads on small models),
///   beyond that one per 4 cores (at least one per socket), so that the global batch stays moderate;
/// - threads per process: cores ÷ processes (hyper-threads do not help the compute kernels);
/// - numWorkers: the seed's "close to the core count, never above it, a little less because the
///   training process needs cores too": cores − 1 for one process, and each DDP process's share
///   of the cores − 1 under DDP (0 means batches are prepared in the training loop); at most one
///   worker per GiB of available memory (each worker keeps batches in flight: fewer when memory
///   is tight); raise it when preprocessing is heavy;
/// - pinMemory: only useful for host → device copies, so off without an accelerator (Tandem's
///   `pinMemory` is a no-op on CPU); with one, the seed's rule: on when host memory ≥ 2× device
///   memory and the system does not swap;
/// - batch size: DataParallel's is the global batch split across replicas; DDP's is per process,
///   the global batch being batch × processes.
public struct MachineAdvice: Sendable {
    /// The parsed CPUs.
    public var cpu: CPUTopology
    /// The parsed memory.
    public var memory: MemoryInfo
    /// CPUs this process may run on (affinity).
    public var usableCPUs: Int
    /// Accelerators found (Tandem itself trains on CPU).
    public var accelerators: Int
    /// Memory of each accelerator in bytes, when known.
    public var acceleratorMemoryBytes: Int?
    /// The batch size the advice is worked out for.
    public var batchSize: Int

    /// Physical cores this process may use.
    public var cores: Int
    /// Recommended processes per node (`tandem run --nproc-per-node`).
    public var processesPerNode: Int
    /// Recommended intra-op threads per process (`TANDEM_NUM_THREADS`, `--threads`).
    public var threadsPerProcess: Int
    /// Recommended `DataLoader(numWorkers:)` for a single process (also under DataParallel).
    public var numWorkersSingleProcess: Int
    /// Recommended `DataLoader(numWorkers:)` in each DDP process.
    public var numWorkersPerDDPProcess: Int
    /// Recommended `DataLoader(pinMemory:)`.
    public var pinMemory: Bool
    /// Per-replica batch under DataParallel with `processesPerNode` replicas and `--batch-size batchSize`.
    public var dataParallelPerReplicaBatch: Int
    /// Global batch under DDP with `processesPerNode` processes and `--batch-size batchSize` each.
    public var ddpGlobalBatch: Int
    /// The per-process batch under DDP that keeps one process's global batch `batchSize`.
    public var ddpPerProcessBatchForSameGlobal: Int
    /// One sentence per recommendation, saying why.
    public var reasons: [String]

    /// Works out the advice from the parsed machine.
    public init(cpu: CPUTopology, memory: MemoryInfo, usableCPUs: Int? = nil, accelerators: Int = 0,
                acceleratorMemoryBytes: Int? = nil, batchSize: Int = 64) {
        self.cpu = cpu
        self.memory = memory
        self.usableCPUs = usableCPUs ?? cpu.logicalCPUs
        self.accelerators = accelerators
        self.acceleratorMemoryBytes = acceleratorMemoryBytes
        self.batchSize = Swift.max(1, batchSize)
        let gib = 1 << 30
        // A process limited to fewer CPUs than the machine has (affinity, cgroups) plans with its share
        // of physical cores.
        cores = self.usableCPUs >= cpu.logicalCPUs ? cpu.physicalCores : Swift.max(1, self.usableCPUs / cpu.threadsPerCore)
        var why: [String] = []
        why.append("cores: \(cpu.sockets) socket(s) × \(cpu.coresPerSocket) core(s) (physical id, cpu cores), \(cpu.physicalCores) physical core(s), \(cpu.logicalCPUs) logical CPU(s); \(self.usableCPUs) usable by this process: \(cores) core(s) to plan with")
        if accelerators > 0 {
            processesPerNode = accelerators
            why.append("processes per node: one per accelerator (\(accelerators))")
        } else if cores <= 8 {
            processesPerNode = cores
            why.append("processes per node: one per core on CPU up to 8 cores (DDP scales better than intra-op threads on small models)")
        } else {
            processesPerNode = Swift.max(cpu.sockets, cores / 4)
            why.append("processes per node: one per 4 cores (at least one per socket) beyond 8 cores, so the global batch stays moderate")
        }
        threadsPerProcess = Swift.max(1, cores / processesPerNode)
        why.append("threads per process: \(cores) core(s) ÷ \(processesPerNode) process(es); hyper-threads do not speed up the kernels")
        let memoryCap = Swift.max(0, memory.availableBytes / gib)
        numWorkersSingleProcess = Swift.min(Swift.max(0, cores - 1), memoryCap)
        numWorkersPerDDPProcess = Swift.min(Swift.max(0, cores / processesPerNode - 1), memoryCap / processesPerNode)
        why.append("numWorkers: cores − 1 for one process (\(numWorkersSingleProcess)), each DDP process's share of the cores − 1 (\(numWorkersPerDDPProcess)); never more than the cores, at most one per GiB available (\(memoryCap)); more when preprocessing is heavy, 0 loads batches in the training loop")
        let swapping = memory.swapUsedBytes > 0 && memory.swapUsedBytes * 10 > memory.swapTotalBytes
        if accelerators == 0 {
            pinMemory = false
            why.append("pinMemory: off: no accelerator, so no host-to-device copy to speed up (a no-op in Tandem on CPU)")
        } else if swapping {
            pinMemory = false
            why.append("pinMemory: off: the system swaps (\(memory.swapUsedBytes / (1 << 20)) MiB of swap in use)")
        } else if let device = acceleratorMemoryBytes {
            pinMemory = memory.totalBytes >= 2 * device * accelerators
            why.append("pinMemory: \(pinMemory ? "on" : "off"): host memory \(memory.totalBytes / gib) GiB \(pinMemory ? "≥" : "<") 2 × device memory \(device * accelerators / gib) GiB")
        } else {
            pinMemory = true
            why.append("pinMemory: on: the system does not swap (device memory unknown: keep host memory ≥ 2× device memory)")
        }
        dataParallelPerReplicaBatch = Swift.max(1, self.batchSize / processesPerNode)
        ddpGlobalBatch = self.batchSize * processesPerNode
        ddpPerProcessBatchForSameGlobal = Swift.max(1, self.batchSize / processesPerNode)
        why.append("batch size: DataParallel splits --batch-size \(self.batchSize) across \(processesPerNode) replica(s) (\(dataParallelPerReplicaBatch) each); DDP's is per process: \(self.batchSize) each is a global batch of \(ddpGlobalBatch) (scale the learning rate), or \(ddpPerProcessBatchForSameGlobal) each keeps the global batch \(self.batchSize); shuffle through DistributedSampler(shuffle: true) + setEpoch, not the DataLoader")
        reasons = why
    }

    /// Reads this machine: `/proc/cpuinfo`, `/proc/meminfo`, the CPUs this process may use,
    /// and NVIDIA device files (`/dev/nvidiaN`). With another `cpuinfoPath` (a saved copy of
    /// another machine's), the CPUs it lists are all taken as usable and no accelerator is assumed.
    public static func forThisMachine(batchSize: Int = 64, cpuinfoPath: String = "/proc/cpuinfo",
                                      meminfoPath: String = "/proc/meminfo") throws -> MachineAdvice {
        let cpuinfo = try String(contentsOfFile: cpuinfoPath, encoding: .utf8)
        let meminfo = try String(contentsOfFile: meminfoPath, encoding: .utf8)
        let here = cpuinfoPath == "/proc/cpuinfo"
        let devices = here ? (try? FileManager.default.contentsOfDirectory(atPath: "/dev")) ?? [] : []
        let gpus = devices.filter { $0.hasPrefix("nvidia") && Int($0.dropFirst(6)) != nil }.count
        return MachineAdvice(cpu: .parse(cpuinfo: cpuinfo), memory: .parse(meminfo: meminfo),
                             usableCPUs: here ? ProcessInfo.processInfo.activeProcessorCount : nil, accelerators: gpus, batchSize: batchSize)
    }

    /// The advice as a JSON-ready dictionary (snake_case keys).
    public var jsonObject: [String: Any] {
        var machine: [String: Any] = [
            "sockets": cpu.sockets, "cores_per_socket": cpu.coresPerSocket, "siblings_per_socket": cpu.siblingsPerSocket,
            "physical_cores": cpu.physicalCores, "logical_cpus": cpu.logicalCPUs, "usable_cpus": usableCPUs,
            "memory_total_bytes": memory.totalBytes, "memory_available_bytes": memory.availableBytes,
            "swap_total_bytes": memory.swapTotalBytes, "swap_used_bytes": memory.swapUsedBytes, "accelerators": accelerators,
        ]
        machine["model_name"] = cpu.modelName
        return [
            "machine": machine,
            "cores": cores,
            "processes_per_node": processesPerNode,
            "threads_per_process": threadsPerProcess,
            "num_workers": numWorkersSingleProcess,
            "num_workers_per_ddp_process": numWorkersPerDDPProcess,
            "pin_memory": pinMemory,
            "batch_size": batchSize,
            "data_parallel_per_replica_batch": dataParallelPerReplicaBatch,
            "ddp_global_batch": ddpGlobalBatch,
            "ddp_per_process_batch_for_same_global": ddpPerProcessBatchForSameGlobal,
            "reasons": reasons,
        ]
    }
}
