import ArgumentParser
import Foundation
import TandemCore
import TandemDistributed
import TandemNN
import TandemOptim
import TandemParallel

/// `tandem-selftest dist-selftest`: a worker that tests spawn as real processes. Every rank builds
/// deterministic tensors, runs collectives and checks the results against values computed locally.
/// Exit codes: 0 ok, 2 a distributed error (printed), 3 a wrong result.
struct DistSelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dist-selftest", abstract: "Run and check collectives (a worker for the distributed tests).",
        shouldDisplay: true)

    @Option(help: "gloo or mpi (under mpirun).") var backend: String = "gloo"
    @Option(help: "Init method: env://, tcp://HOST:PORT or file:///path.") var initMethod: String = "env://"
    @Option(help: "Rank (default: from the environment).") var rank: Int?
    @Option(help: "World size (default: from the environment).") var worldSize: Int?
    @Option(help: "Timeout of the group and every operation, in milliseconds.") var timeoutMs: Int = 10_000
    @Option(help: "allreduce, broadcast, allgather, barrier, reduce, gather, scatter, reducescatter, sendrecv, all, or join (DDP with uneven inputs, see --batches).") var op: String = "all"
    @Option(help: "Reduce op for allreduce/reduce/reducescatter (sum, product, min, max, average); 'all' tries each.") var reduceOp: String = "all"
    @Option(help: "float32, float64 or int64.") var dtype: String = "float32"
    @Option(help: "Elements per tensor.") var count: Int = 1000
    @Option(help: "Repetitions.") var iterations: Int = 1
    @Option(help: "This rank kills itself with SIGKILL ...") var dieRank: Int?
    @Option(help: "... before this iteration.") var dieAfter: Int = 0
    @Option(help: "This rank stops answering (sleeps) for --hang-seconds before its first collective.") var hangRank: Int?
    @Option(help: "Seconds --hang-rank sleeps.") var hangSeconds: Double = 5
    @Option(help: "With --op join: comma-separated number of training batches of each rank, e.g. 3,5.") var batches: String = "3,5"


    func run() throws {
        do {
            try body()
        } catch let e as DistributedError {
            FileHandle.standardError.write(Data("error: \(e)\n".utf8))
            throw ExitCode(2)
        }
    }

    private func value(_ r: Int, _ i: Int) -> Double { Double(i % 13 + r + 1) }

    private func tensor(rank r: Int, count: Int, dtype: DType, offset: Int = 0) -> Tensor {
        // Filled through a pointer: 16M-element tensors (the 64 MB test) stay quick in debug builds.
        var t = Tensor.zeros([count], dtype: dtype)
        let period = (0..<13).map { value(r, $0) + Double(offset) }
        func fill<T>(_ type: T.Type, _ convert: (Double) -> T) {
            let values = period.map(convert)
            _ = try? t.withUnsafeMutableBufferPointer(as: T.self) { b in
                var j = 0
                for i in 0..<b.count {
                    b[i] = values[j]
                    j = j == 12 ? 0 : j + 1
                }
            }
        }
        switch dtype {
        case .float32: fill(Float.self) { Float($0) }
        case .float64: fill(Double.self) { $0 }
        default: fill(Int64.self) { Int64($0) }
        }
        return t
    }

    private func doubles(_ t: Tensor) throws -> [Double] {
        switch t.dtype {
        case .float32: return try t.withUnsafeBufferPointer(as: Float.self) { $0.map(Double.init) }
        case .float64: return try t.withUnsafeBufferPointer(as: Double.self) { Array($0) }
        default: return try t.withUnsafeBufferPointer(as: Int64.self) { $0.map(Double.init) }
        }
    }

    /// The 13 distinct values of the reduction (value(r, i) depends on i only through i % 13).
    private func expectedReduce(_ op: ReduceOp, world: Int, dtype: DType) -> [Double] {
        let period = (0..<13).map { i -> Double in
            var acc = value(0, i)
            for r in 1..<max(world, 1) {
                let v = value(r, i)
                switch op {
                case .sum, .average: acc += v
                case .product: acc *= v
                case .min: acc = Swift.min(acc, v)
                case .max: acc = Swift.max(acc, v)
                }
            }
            guard op == .average else { return acc }
            switch dtype {
            case .float32: return Double(Float(acc) / Float(world))
            case .int64: return Double(Int64(acc) / Int64(world))
            default: return acc / Double(world)
            }
        }
        return period
    }

    /// Checks that element i of `got` is `period[i % 13]` for `count` elements.
    private func expectPeriodic(_ what: String, _ got: Tensor, _ period: [Double], rank r: Int) throws {
        var bad: (Int, Double)?
        func scan<T>(_ type: T.Type, _ convert: (T) -> Double) throws {
            try got.withUnsafeBufferPointer(as: T.self) { b in
                var j = 0
                for i in 0..<b.count {
                    let v = convert(b[i])
                    if v != period[j] { bad = (i, v); return }
                    j = j == 12 ? 0 : j + 1
                }
            }
        }
        switch got.dtype {
        case .float32: try scan(Float.self) { Double($0) }
        case .float64: try scan(Double.self) { $0 }
        default: try scan(Int64.self) { Double($0) }
        }
        if got.count != count || bad != nil {
            let (i, v) = bad ?? (0, .nan)
            FileHandle.standardError.write(Data("MISMATCH rank \(r) \(what): element \(i) is \(v), expected \(period[i % 13]) (\(got.count) vs \(count) elements)\n".utf8))
            throw ExitCode(3)
        }
    }

    private func expect(_ what: String, _ got: Tensor, _ want: [Double], rank r: Int) throws {
        let g = try doubles(got)
        if g != want {
            let i = zip(g, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
            let gi = i < g.count ? "\(g[i])" : "missing", wi = i < want.count ? "\(want[i])" : "missing"
            FileHandle.standardError.write(Data("MISMATCH rank \(r) \(what): element \(i) is \(gi), expected \(wi) (\(g.count) vs \(want.count) elements)\n".utf8))
            throw ExitCode(3)
        }
    }

    private func body() throws {
        guard let dt = DType(rawValue: dtype) else { throw ValidationError("unknown dtype \(dtype)") }
        let timeout = Duration.milliseconds(timeoutMs)
        guard let be = Backend(rawValue: backend) else { throw ValidationError("unknown backend \(backend)") }
        let pg = try initProcessGroup(backend: be, initMethod: initMethod, rank: rank, worldSize: worldSize, timeout: timeout)
        let r = pg.rank, w = pg.worldSize
        if op == "join" { return try runJoin(pg) }
        let ops = op == "all" ? ["allreduce", "broadcast", "allgather", "barrier", "reduce", "gather", "scatter", "reducescatter", "sendrecv", "subgroup"] : [op]
        let reduceOps = reduceOp == "all" ? ReduceOp.allCases : [ReduceOp(rawValue: reduceOp)].compactMap { $0 }
        let mine = tensor(rank: r, count: count, dtype: dt)
        var expected = [ReduceOp: [Double]]()
        if !Set(ops).isDisjoint(with: ["allreduce", "reduce", "reducescatter"]) {
            for rop in reduceOps + [.sum] { expected[rop] = expectedReduce(rop, world: w, dtype: dt) }
        }
        for iteration in 0..<iterations {
            if let dieRank, dieRank == r, iteration == dieAfter { kill(getpid(), SIGKILL) }
            if let hangRank, hangRank == r, iteration == 0 {
                Thread.sleep(forTimeInterval: hangSeconds)
                return
            }
            for name in ops {
                switch name {
                case "allreduce":
                    for rop in reduceOps {
                        try expectPeriodic("allReduce \(rop)", try pg.allReduce(mine, op: rop), expected[rop]!, rank: r)
                        var inPlace = mine
                        try pg.allReduce(&inPlace, op: rop)
                        try expectPeriodic("allReduce in place \(rop)", inPlace, expected[rop]!, rank: r)
                    }
                case "broadcast":
                    let root = w - 1
                    try expect("broadcast", try pg.broadcast(mine, root: root), (0..<count).map { value(root, $0) }, rank: r)
                case "allgather":
                    let all = try pg.allGather(mine)
                    try expect("allGather", try Tensor.cat(all, axis: 0), (0..<w).flatMap { q in (0..<count).map { value(q, $0) } }, rank: r)
                case "barrier":
                    try pg.barrier()
                case "reduce":
                    for rop in reduceOps {
                        let got = try pg.reduce(mine, root: 0, op: rop)
                        if r == 0 { try expectPeriodic("reduce \(rop)", got, expected[rop]!, rank: r) }
                    }
                case "gather":
                    let all = try pg.gather(mine, root: 0)
                    if r == 0 {
                        try expect("gather", try Tensor.cat(all, axis: 0), (0..<w).flatMap { q in (0..<count).map { value(q, $0) } }, rank: r)
                    }
                case "scatter":
                    let list = r == 0 ? (0..<w).map { tensor(rank: 0, count: count, dtype: dt, offset: 100 * $0) } : []
                    try expect("scatter", try pg.scatter(Tensor.zeros([count], dtype: dt), scatterList: list, root: 0),
                               (0..<count).map { value(0, $0) + Double(100 * r) }, rank: r)
                case "reducescatter":
                    let list = (0..<w).map { _ in mine }
                    try expectPeriodic("reduceScatter sum", try pg.reduceScatter(list, op: .sum), expected[.sum]!, rank: r)
                case "sendrecv":
                    if w >= 2 {
                        let next = (r + 1) % w, prev = (r + w - 1) % w
                        let s = pg.sendAsync(mine, to: next, tag: 7, timeout: nil)
                        let got = try pg.recvAsync(Tensor.zeros([count], dtype: dt), from: prev, tag: 7, timeout: nil).wait()
                        try s.wait()
                        try expect("send/recv", got, (0..<count).map { value(prev, $0) }, rank: r)
                    }
                case "subgroup":
                    // Ranks 0 and w-1 form a subgroup (its own Gloo context and store prefix).
                    let members = Array(Set([0, w - 1])).sorted()
                    let sub = try pg.newGroup(ranks: members)
                    if let sub {
                        let want = (0..<count).map { i in members.map { value($0, i) }.reduce(0, +) }
                        try expect("subgroup allReduce", try sub.allReduce(mine), want, rank: r)
                        sub.destroy()
                    } else if members.contains(r) {
                        throw ValidationError("rank \(r) should be in subgroup \(members)")
                    }
                default:
                    throw ValidationError("unknown op \(name)")
                }
            }
        }
        print("dist-selftest rank \(r)/\(w): ok (\(ops.joined(separator: ",")); \(dt) x \(count); \(iterations) iteration(s))")
        pg.destroy()
    }

    /// `--op join`: DDP training of a small model where rank r has `batches[r]` batches, inside
    /// `join { }`; prints the steps and a checksum of the final parameters (equal on every rank).
    private func runJoin(_ pg: any ProcessGroup) throws {
        let counts = batches.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard counts.count == pg.worldSize else { throw ValidationError("--batches needs \(pg.worldSize) numbers, got '\(batches)'") }
        let g = Generator(seed: UInt64(1 + pg.rank))
        let model = Sequential([Linear(16, 32, generator: g), ReLU(), Linear(32, 4, generator: g)])
        let ddp = try DistributedDataParallel(model, processGroup: pg, bucketCapMB: 0.001)
        let optimizer = try SGD(ddp.parameters(), lr: 0.1, momentum: 0.9)
        try ddp.join {
            for step in 0..<counts[pg.rank] {
                let data = Generator(seed: UInt64(100 + 10 * pg.rank + step))
                let x = Tensor.randn([8, 16], generator: data)
                let y = Tensor(int64: (0..<8).map { _ in Int(data.next() % 4) })
                optimizer.zeroGrad()
                try Tensor.crossEntropy(ddp(x), target: y).backward()
                try ddp.synchronize()
                try optimizer.step()
            }
        }
        let checksum = ddp.parameters().map { $0.value.toDoubleArray().reduce(0, +) }.reduce(0, +)
        print("dist-selftest join rank \(pg.rank)/\(pg.worldSize): \(counts[pg.rank]) steps, checksum \(String(format: "%.9g", checksum))")
        pg.destroy()
    }
}
