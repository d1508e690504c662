import ArgumentParser
import Foundation
import TandemCore
import TandemDistributed

/// `tandem bench allreduce`: times all-reduce (sum, float32) between processes on this machine
/// for 1 KB, 1 MB, 25 MB and 100 MB, and reports the median time and the bandwidth per size.
///
/// Started by hand, it launches its own workers: through `tandem run --standalone` for gloo,
/// through `mpirun` for mpi. Each worker warms up with 3 all-reduces, then times 50 (10 from
/// 25 MB on), exactly as `Benchmarks/pytorch/allreduce.py` and `Benchmarks/gloo/raw_allreduce.cpp`
/// do; rank 0 reports. `gb_per_s` is the algorithm bandwidth, bytes ÷ median time (10⁹ bytes/s);
/// for 2 processes it equals the bus bandwidth of nccl-tests.
struct BenchAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Time all-reduce between local processes (gloo or mpi).",
        discussion: "Example: tandem bench allreduce --json > tandem.jsonl; see Benchmarks/README.md for the comparison with raw Gloo and PyTorch.")

    @Option(help: "gloo or mpi.") var backend: String = "gloo"
    @Option(help: "Processes.") var nproc: Int = 2
    @Option(help: "Comma-separated sizes in bytes; KB and MB suffixes (1024 and 1048576) allowed.") var sizes: String = "1KB,1MB,25MB,100MB"
    @Option(help: "inplace (like dist.all_reduce), copy (returns a new tensor), async (consumed by allReduceAsync) or all.") var form: String = "inplace"
    @Option(help: "Timed repetitions per size (default: 50 below 25 MB, 10 from 25 MB).") var reps: Int?
    @Option(help: "Timeout of every collective, in milliseconds.") var timeoutMs: Int = 600_000
    @Flag(help: "One JSON object per line instead of a table.") var json = false
    @Flag(help: .hidden) var worker = false

    func validate() throws {
        guard Backend(rawValue: backend) != nil else { throw ValidationError("unknown --backend '\(backend)'; choose gloo or mpi") }
        guard nproc >= 2 else { throw ValidationError("--nproc must be at least 2") }
        guard ["inplace", "copy", "async", "all"].contains(form) else { throw ValidationError("unknown --form '\(form)'; choose inplace, copy, async or all") }
        _ = try parsedSizes()
        if let reps, reps < 1 { throw ValidationError("--reps must be at least 1") }
    }

    func parsedSizes() throws -> [Int] {
        try sizes.split(separator: ",").map { part in
            let s = part.trimmingCharacters(in: .whitespaces).uppercased()
            let (digits, unit) = s.hasSuffix("MB") ? (s.dropLast(2), 1 << 20) : s.hasSuffix("KB") ? (s.dropLast(2), 1 << 10)
                : s.hasSuffix("B") ? (s.dropLast(), 1) : (Substring(s), 1)
            guard let n = Int(digits), n > 0, (n * unit) % 4 == 0 else {
                throw ValidationError("bad size '\(part)' in --sizes: give a positive multiple of 4 bytes, e.g. 1KB or 25MB")
            }
            return n * unit
        }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        if worker || environment["WORLD_SIZE"] != nil || environment["OMPI_COMM_WORLD_SIZE"] != nil {
            return try runWorker()
        }
        try launch()
    }

    // MARK: - Launcher

    private func launch() throws {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var workerArguments = [exe, "allreduce", "--worker", "--backend", backend, "--sizes", sizes, "--form", form,
                               "--timeout-ms", String(timeoutMs)]
        if let reps { workerArguments += ["--reps", String(reps)] }
        let p = Process()
        if backend == "mpi" {
            guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: FileManager.default.isExecutableFile) else {
                throw ValidationError("--backend mpi needs mpirun (OpenMPI); install openmpi-bin or use --backend gloo")
            }
            p.executableURL = URL(fileURLWithPath: mpirun)
            p.arguments = (getuid() == 0 ? ["--allow-run-as-root"] : []) + ["--oversubscribe", "-np", String(nproc)] + workerArguments
        } else {
            // The launcher of the `tandem` executable built next to this one.
            p.executableURL = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("tandem")
            p.arguments = ["run", "--standalone", "--nproc-per-node", String(nproc), "--"] + workerArguments
        }
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        var rows: [[String: Any]] = []
        if !json {
            print("all-reduce (sum, float32, \(form)) over \(nproc) processes, \(backend)")
            print("     size    median ms       min ms      GB/s")
        }
        var pending = Data()
        func consume(_ line: Data) {
            var text = String(decoding: line, as: UTF8.self)
            // `tandem run` prefixes each line with "[rank N] ".
            if text.hasPrefix("[rank "), let close = text.firstIndex(of: "]") {
                text = String(text[text.index(after: close)...]).trimmingCharacters(in: .whitespaces)
            }
            guard text.hasPrefix("{"), let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                if !text.isEmpty { FileHandle.standardError.write(Data((text + "\n").utf8)) }
                return
            }
            rows.append(object)
            if json {
                print(text)
            } else {
                let formName = form == "all" ? "  \(object["form"] ?? "")" : ""
                let size = object["size"] as? String ?? "?"
                print(String(repeating: " ", count: max(0, 9 - size.count)) + size
                    + String(format: " %12.3f %12.3f %9.3f", object["median_ms"] as? Double ?? .nan,
                             object["min_ms"] as? Double ?? .nan, object["gb_per_s"] as? Double ?? .nan) + formName)
            }
            fflush(nil)
        }
        let handle = out.fileHandleForReading
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            pending.append(chunk)
            while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                consume(pending[pending.startIndex..<nl])
                pending = Data(pending[(nl + 1)...])
            }
        }
        if !pending.isEmpty { consume(pending) }
        p.waitUntilExit()
        guard p.terminationStatus == 0, !rows.isEmpty else {
            FileHandle.standardError.write(Data("tandem bench allreduce: the workers failed (status \(p.terminationStatus))\n".utf8))
            throw ExitCode(1)
        }
    }

    // MARK: - Worker

    private func runWorker() throws {
        guard let be = Backend(rawValue: backend) else { throw ValidationError("unknown backend \(backend)") }
        let pg = try initProcessGroup(backend: be, initMethod: "env://", timeout: .milliseconds(timeoutMs))
        let forms: [AllReduceBench.Form] = form == "all" ? AllReduceBench.Form.allCases : [AllReduceBench.Form(rawValue: form) ?? .inplace]
        try AllReduceBench.run(pg, sizes: try parsedSizes(), forms: forms, reps: reps)
        pg.destroy()
    }
}

/// The all-reduce timing loop shared by `tandem bench allreduce` and `tandem dist-selftest --bench`.
enum AllReduceBench {
    /// How the all-reduce is called.
    enum Form: String, CaseIterable {
        /// `allReduce(&t, op: .sum)`: in place, like `dist.all_reduce(t)` and raw Gloo.
        case inplace
        /// `t2 = allReduce(t)`: a new result tensor each time.
        case copy
        /// `t = allReduceAsync(consume t).wait()`: the tensor is handed to the operation.
        case async
    }

    /// "1 KB", "25 MB", or bytes.
    static func label(_ bytes: Int) -> String {
        if bytes % (1 << 20) == 0 { return "\(bytes >> 20) MB" }
        if bytes % (1 << 10) == 0 { return "\(bytes >> 10) KB" }
        return "\(bytes) B"
    }

    /// Times every size and form; rank 0 prints one JSON line each. Warm-up 3, then `reps`
    /// timed calls (default 50, or 10 from 25 MB).
    static func run(_ pg: any ProcessGroup, sizes: [Int], forms: [Form], reps: Int?) throws {
        for bytes in sizes {
            let n = bytes / 4
            // Zeros: sums stay finite however many times they are repeated.
            var t = Tensor.zeros([n], dtype: .float32)
            let count = reps ?? (bytes >= (25 << 20) ? 10 : 50)
            for form in forms {
                for _ in 0..<3 { try pg.allReduce(&t, op: .sum) }
                var times = [Double]()
                for _ in 0..<count {
                    let start = ContinuousClock.now
                    switch form {
                    case .inplace: try pg.allReduce(&t, op: .sum)
                    case .copy: _ = try pg.allReduce(t, op: .sum)
                    case .async: t = try pg.allReduceAsync(consume t, op: .sum, timeout: nil).wait()
                    }
                    let d = ContinuousClock.now - start
                    times.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
                }
                times.sort()
                let median = times[times.count / 2]
                if pg.rank == 0 {
                    let gbs = Double(bytes) / (median / 1000) / 1e9
                    print("{\"op\":\"allreduce\",\"form\":\"\(form.rawValue)\",\"backend\":\"\(pg.backendName)\",\"world\":\(pg.worldSize),"
                        + "\"dtype\":\"float32\",\"bytes\":\(bytes),\"size\":\"\(label(bytes))\",\"reps\":\(count),"
                        + "\"median_ms\":\(rounded(median)),\"min_ms\":\(rounded(times[0])),\"gb_per_s\":\((gbs * 1e6).rounded() / 1e6)}")
                    fflush(nil)
                }
            }
        }
    }

    private static func rounded(_ x: Double) -> Double { (x * 10_000).rounded() / 10_000 }
}
