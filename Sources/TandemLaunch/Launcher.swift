import Dispatch
import Foundation
import Synchronization

/// Launches a distributed job on this node, like `torchrun`: starts `nprocPerNode` copies of a
/// program with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
/// MASTER_PORT, TANDEM_NUM_THREADS, TANDEM_RESTART_COUNT and TANDEM_STORE_TOKEN set, prefixes
/// their output with the rank, and when one fails stops the others (SIGTERM, then SIGKILL after
/// `stopGrace`) and throws `LaunchError.failed` naming the rank and how it died; with
/// `maxRestarts` the whole local group is restarted first. SIGINT, SIGTERM and SIGHUP to the
/// launcher are forwarded to the ranks. `tandem run` is this type behind a command line.
///
///     try Launcher(LaunchConfiguration(program: "./train", arguments: ["--epochs", "1"], nprocPerNode: 2,
///                                      standalone: true)).run()
public struct Launcher: Sendable {
    /// What to launch and how.
    public let configuration: LaunchConfiguration

    /// A launcher for `configuration`; throws `LaunchError.invalidConfiguration` when it is not valid.
    public init(_ configuration: LaunchConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
    }

    /// Runs the job until every rank has exited 0 (returns), a rank failed after the restarts
    /// (`LaunchError.failed`), or the launcher was interrupted (`LaunchError.interrupted`).
    public func run() throws {
        let c = configuration
        let nodes = c.standalone ? 1 : c.nnodes
        let node = c.standalone ? 0 : c.nodeRank
        let addr = c.standalone ? "127.0.0.1" : c.masterAddr
        let port = (c.standalone || c.masterPort == 0) ? try freePort() : c.masterPort
        let executable = try resolve(c.program)
        let world = nodes * c.nprocPerNode
        let threads = max(1, ProcessInfo.processInfo.activeProcessorCount / c.nprocPerNode)
        let output = OutputSink(unprefixedStdoutRank: c.unprefixedStdoutRank)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if c.nprocPerNode > cores {
            output.log("tandem run: warning: --nproc-per-node \(c.nprocPerNode) on \(cores) core(s): the processes share the cores "
                + "(each step takes about \(c.nprocPerNode)/\(cores) times as long as with a core each) and each holds its own copy "
                + "of the model, data and buffers; use --nproc-per-node \(cores) or fewer on this machine")
        }
        // Without setpriv's --pdeathsig the ranks would outlive a killed launcher: say so.
        if Self.setpriv == nil {
            output.log("tandem run: warning: /usr/bin/setpriv with --pdeathsig (util-linux 2.33 or later) is missing, so the "
                + "ranks will outlive this launcher if it is killed with SIGKILL")
        }
        // The rendezvous store answers only processes that present the job's token.
        var token = ProcessInfo.processInfo.environment["TANDEM_STORE_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if token == nil {
            if nodes == 1 {
                var generator = SystemRandomNumberGenerator()
                token = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
            } else {
                output.log("tandem run: warning: TANDEM_STORE_TOKEN is not set, so anyone who can reach \(addr):\(port) can read and "
                    + "change this job's rendezvous store; set the same secret TANDEM_STORE_TOKEN on every node")
            }
        }
        var attempt = 0
        while true {
            let failure = try launch(executable: executable, arguments: c.arguments, world: world, node: node,
                                     addr: addr, port: port, threads: threads, restart: attempt, token: token, output: output)
            guard let failure else { return }
            if attempt < c.maxRestarts {
                attempt += 1
                output.log("tandem run: \(failure); restarting the local group (restart \(attempt) of \(c.maxRestarts))")
                continue
            }
            output.log("tandem run: \(failure); stopped the other ranks.")
            throw LaunchError.failed(failure)
        }
    }

    private func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw LaunchError.invalidConfiguration("cannot find a free port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    private func resolve(_ program: String) throws -> URL {
        if program.contains("/") { return URL(fileURLWithPath: program) }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let path = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: path) { return URL(fileURLWithPath: path) }
        }
        throw LaunchError.programNotFound(program)
    }

    /// Runs one local group; returns nil when every rank exits 0, else a description of the first failure.
    private func launch(executable: URL, arguments: [String], world: Int, node: Int, addr: String, port: Int,
                        threads: Int, restart: Int, token: String?, output: OutputSink) throws -> String? {
        let exited = DispatchSemaphore(value: 0)
        var children: [(rank: Int, process: Process, readers: DispatchGroup)] = []
        // When every process has a core of its own, a rank that waits for a collective spins
        // instead of sleeping (see GlooTransport.busyPollPolicy). Values the user set are kept.
        let nprocPerNode = configuration.nprocPerNode
        let busyPoll = nprocPerNode <= ProcessInfo.processInfo.activeProcessorCount ? "1" : "0"
        for local in 0..<nprocPerNode {
            let rank = node * nprocPerNode + local
            let p = Process()
            // The rank gets SIGTERM when the launcher dies, however it dies (SIGKILL included):
            // setpriv (util-linux) sets PR_SET_PDEATHSIG and execs the program under the same pid.
            if let setpriv = Self.setpriv {
                p.executableURL = setpriv
                p.arguments = ["--pdeathsig", "TERM", "--", executable.path] + arguments
            } else {
                p.executableURL = executable
                p.arguments = arguments
            }
            p.environment = environment(rank: rank, local: local, world: world, node: node, addr: addr, port: port,
                                        threads: threads, restart: restart, token: token, busyPoll: busyPoll)
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.terminationHandler = { _ in exited.signal() }
            let readers = forwardLines(of: rank, from: [(out, false), (err, true)], to: output)
            do {
                try p.run()
            } catch {
                for c in children { c.process.terminate() }
                throw LaunchError.cannotStart(program: executable.path, reason: "\(error)")
            }
            try? out.fileHandleForWriting.close()
            try? err.fileHandleForWriting.close()
            children.append((rank, p, readers))
        }
        // SIGINT, SIGTERM and SIGHUP (the terminal closed) to the launcher are forwarded to the
        // ranks as SIGTERM, as torchrun does; ranks still running after --stop-grace get SIGKILL.
        let interrupted = Mutex<Int32?>(nil)
        let processes = children.map(\.process)
        let grace = configuration.stopGrace
        let forwarded = [SIGINT, SIGTERM, SIGHUP]
        let sources = forwarded.map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                let first = interrupted.withLock { current -> Bool in
                    defer { current = current ?? sig }
                    return current == nil
                }
                for p in processes where p.isRunning { kill(p.processIdentifier, SIGTERM) }
                guard first else { return }
                DispatchQueue.global().asyncAfter(deadline: .now() + grace) {
                    for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
                }
            }
            source.resume()
            return source
        }
        defer {
            for s in sources { s.cancel() }
            for sig in forwarded { signal(sig, SIG_DFL) }
        }
        var failure: String?
        var remaining = children.count
        while remaining > 0 {
            exited.wait()
            remaining -= 1
            if failure == nil, children.contains(where: { !$0.process.isRunning && !succeeded($0.process) }) {
                // Let the peers of a dead rank notice and exit, then name the root cause first
                // (a rank killed by a signal before ranks that exited with an error).
                Thread.sleep(forTimeInterval: 0.2)
                let failed = children.filter { !$0.process.isRunning && !succeeded($0.process) }
                    .sorted { ($0.process.terminationReason == .uncaughtSignal ? 0 : 1, $0.rank) < ($1.process.terminationReason == .uncaughtSignal ? 0 : 1, $1.rank) }
                failure = failed.map {
                    "rank \($0.rank) (local rank \($0.rank - node * nprocPerNode), pid \($0.process.processIdentifier)) \(describe($0.process))"
                }.joined(separator: "; then ")
                stop(children.map(\.process))
            }
        }
        for c in children { _ = c.readers.wait(timeout: .now() + 2) }
        if let sig = interrupted.withLock({ $0 }) {
            output.log("tandem run: interrupted by signal \(sig); stopped every rank.")
            throw LaunchError.interrupted(signal: sig)
        }
        return failure
    }

    /// The environment of one rank: the launcher's, with the job's variables set.
    private func environment(rank: Int, local: Int, world: Int, node: Int, addr: String, port: Int, threads: Int,
                             restart: Int, token: String?, busyPoll: String) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["RANK"] = String(rank)
        env["LOCAL_RANK"] = String(local)
        env["WORLD_SIZE"] = String(world)
        env["LOCAL_WORLD_SIZE"] = String(configuration.nprocPerNode)
        env["GROUP_RANK"] = String(node)
        env["MASTER_ADDR"] = addr
        env["MASTER_PORT"] = String(port)
        env["TANDEM_NUM_THREADS"] = String(threads)
        // How many times the group was restarted (like TORCHELASTIC_RESTART_COUNT).
        env["TANDEM_RESTART_COUNT"] = String(restart)
        env["TANDEM_STORE_TOKEN"] = token
        // Rank 0's output reaches the terminal through the prefixer, not as a terminal: name
        // the launcher's terminal so that its progress bar is drawn there (ProgressBar).
        if local == 0, let terminal = Self.terminal { env["TANDEM_PROGRESS_TTY"] = terminal }
        // OpenMP (oneDNN) threads of each child: its share of the cores, spinning only briefly
        // (see ProcessEnvironment). Values the user set are kept.
        if env["OMP_NUM_THREADS"] == nil { env["OMP_NUM_THREADS"] = String(threads) }
        if env["TANDEM_GLOO_BUSY_POLL"] == nil { env["TANDEM_GLOO_BUSY_POLL"] = busyPoll }
        if env["OMP_WAIT_POLICY"] == nil && env["GOMP_SPINCOUNT"] == nil {
            for (key, value) in OpenMPSettings.shortSpin { env[key] = value }
        }
        return env
    }

    /// Reads each pipe on a thread of its own and writes its lines, prefixed with the rank,
    /// to `output`; the group is left when every pipe has reached its end.
    private func forwardLines(of rank: Int, from pipes: [(Pipe, Bool)], to output: OutputSink) -> DispatchGroup {
        let readers = DispatchGroup()
        for (pipe, toStderr) in pipes {
            readers.enter()
            let handle = pipe.fileHandleForReading
            let thread = Thread {
                var pending = Data()
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    pending.append(chunk)
                    while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        output.line(rank: rank, pending[pending.startIndex..<nl], toStderr: toStderr)
                        pending = Data(pending[(nl + 1)...])
                    }
                }
                if !pending.isEmpty { output.line(rank: rank, pending, toStderr: toStderr) }
                readers.leave()
            }
            thread.start()
        }
        return readers
    }

    /// The terminal the launcher's standard error writes to; nil for a pipe or a file (logs, CI).
    static let terminal: String? = isatty(STDERR_FILENO) != 0 ? ttyname(STDERR_FILENO).map { String(cString: $0) } : nil

    /// util-linux's setpriv, which starts each rank with a parent-death signal; nil where it is
    /// missing or too old for `--pdeathsig` (util-linux before 2.33).
    static let setpriv: URL? = {
        let path = "/usr/bin/setpriv"
        guard FileManager.default.isExecutableFile(atPath: path) else { return nil }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: path)
        probe.arguments = ["--help"]
        let out = Pipe()
        probe.standardOutput = out
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return nil }
        let help = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        probe.waitUntilExit()
        return help.contains("--pdeathsig") ? URL(fileURLWithPath: path) : nil
    }()

    private func succeeded(_ p: Process) -> Bool { p.terminationReason == .exit && p.terminationStatus == 0 }

    private func describe(_ p: Process) -> String {
        if p.terminationReason == .uncaughtSignal {
            let names: [Int32: String] = [1: "SIGHUP", 2: "SIGINT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
                                          8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"]
            let s = p.terminationStatus
            return "was killed by signal \(s) (\(names[s] ?? "signal \(s)"))"
        }
        return "exited with code \(p.terminationStatus)"
    }

    /// SIGTERM to every running process, then SIGKILL after the grace period.
    private func stop(_ processes: [Process]) {
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(configuration.stopGrace)
        while processes.contains(where: \.isRunning) && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
    }
}
