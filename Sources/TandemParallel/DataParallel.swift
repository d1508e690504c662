import Dispatch
import Foundation
import TandemNN

/// Single-process data parallelism, like `torch.nn.DataParallel`: the model is replicated on
/// several CPU "devices" (groups of threads), each forward pass scatters the batch along
/// dimension 0 (`torch.chunk`'s split: chunks of ⌈N ÷ replicas⌉), runs the replicas in
/// parallel threads, and gathers their outputs along dimension 0. Backward sums every
/// replica's gradients into the original parameters (the "reduce to device 0"), so an
/// optimizer over `parameters()` (the original model's) steps once, and the next forward
/// hands the new weights to the replicas.
///
/// Replica 0 is the original model. The others are built by `makeReplica` (same architecture)
/// and, at every forward pass, their parameters become differentiable aliases of the
/// original's (no copy: backward of the alias adds into the original's gradient, like
/// PyTorch's `Broadcast`), and their buffers are the original's; buffer updates made by the
/// other replicas (BatchNorm running statistics) are dropped, as in PyTorch. BatchNorm sees
/// each replica's chunk only. During the forward pass each replica runs with
/// `numThreads ÷ replicas` intra-op threads (`Tandem.withThreadLimit`); backward runs on the
/// calling thread.
///
/// When it helps on CPU: mostly not. All replicas share the same cores and memory bandwidth
/// that one model with all intra-op threads already uses, so DataParallel only wins when the
/// model's kernels are too small to keep every thread busy (small layers, small batches), and
/// backward stays serial. `DistributedDataParallel` (one process per core group, `tandem run`)
/// parallelises forward, backward and the optimizer and is the way to scale; the batch size
/// here is the global batch, split across replicas (under DDP it is per process). On 2 cores
/// the ConvNet's training step is slower under 2 replicas than plain with the same threads, at
/// batch 64 and 256 alike (`tandem bench dataparallel`; docs/BENCHMARKS.md, issue 4).
public final class DataParallel: Module {
    /// The original model (replica 0): its parameters are the ones to optimise.
    public let module: any Module
    /// The replicas, `replicas[0] === module`.
    public let replicas: [any Module]

    private let originalParameters: [Parameter]

    /// Wraps `module` with `replicaCount` replicas; `makeReplica` builds a model of the same
    /// architecture (its initial weights do not matter). Throws if a replica's parameter or
    /// buffer names and shapes differ from `module`'s.
    public init(_ module: any Module, replicaCount: Int, makeReplica: () throws -> any Module) throws {
        guard replicaCount >= 1 else { throw DataParallelError.invalidArgument("DataParallel needs at least one replica, got \(replicaCount)") }
        self.module = module
        let named = module.namedParameters()
        originalParameters = named.map(\.1)
        var list: [any Module] = [module]
        for k in 1..<replicaCount {
            let replica = try makeReplica()
            let theirs = replica.namedParameters()
            let mine = named.map { "\($0.0)\($0.1.shape)" }, other = theirs.map { "\($0.0)\($0.1.shape)" }
            guard mine == other else {
                let i = zip(mine, other).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? Swift.min(mine.count, other.count)
                throw DataParallelError.invalidArgument(
                    "DataParallel: replica \(k) differs from the model at parameter \(i): \(i < other.count ? other[i] : "nothing") instead of \(i < mine.count ? mine[i] : "nothing"); makeReplica must build the same architecture")
            }
            guard module.namedBuffers().map({ "\($0.0)\($0.1.value.shape)" }) == replica.namedBuffers().map({ "\($0.0)\($0.1.value.shape)" }) else {
                throw DataParallelError.invalidArgument("DataParallel: replica \(k)'s buffers differ from the model's; makeReplica must build the same architecture")
            }
            list.append(replica)
        }
        replicas = list
    }

    /// None: the original model's parameters and buffers appear under their own names.
    public var children: [(String, any Module)] { [] }
    /// The original model's parameters (no `module.` prefix).
    public var localParameters: [(String, Parameter)] { module.namedParameters() }
    /// The original model's buffers.
    public var localBuffers: [(String, Buffer)] { module.namedBuffers() }
    /// Whether the original model is in training mode (the replicas follow it).
    public var isTraining: Bool {
        get { module.isTraining }
        set { module.train(newValue) }
    }

    /// The original model's state dict.
    public func stateDict() -> [(String, Tensor)] { module.stateDict() }

    /// Scatters `input` along dimension 0, runs the replicas in parallel, gathers the outputs.
    /// A batch smaller than the replica count uses fewer replicas.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard replicas.count > 1, input.rank > 0, input.shape[0] > 1 else { return try module(input) }
        let n = input.shape[0]
        let chunk = (n + replicas.count - 1) / replicas.count
        let used = (n + chunk - 1) / chunk
        let pieces = try (0..<used).map { k in try input.narrow(axis: 0, start: k * chunk, length: Swift.min(chunk, n - k * chunk)) }
        let training = module.isTraining
        let gradEnabled = GradMode.enabled
        // Hand the current weights to the replicas: aliases of the original parameters whose
        // backward adds into the original gradients.
        for replica in replicas.dropFirst().prefix(used - 1) {
            replica.train(training)
            for (p, original) in zip(replica.parameters(), originalParameters) {
                p.value = gradEnabled
                    ? Tensor.customFunction("broadcast", value: original.value, inputs: [original.value]) { g in [g] }
                    : original.value.detach()
            }
            for (b, original) in zip(replica.namedBuffers(), module.namedBuffers()) { b.1.value = original.1.value }
        }
        final class Results: @unchecked Sendable {
            private let lock = NSLock()
            var outputs: [Tensor?]
            var errors: [(any Error)?]
            init(_ count: Int) { outputs = Array(repeating: nil, count: count); errors = Array(repeating: nil, count: count) }
            func set(_ k: Int, _ result: Result<Tensor, any Error>) {
                lock.lock()
                defer { lock.unlock() }
                switch result {
                case .success(let t): outputs[k] = t
                case .failure(let e): errors[k] = e
                }
            }
        }
        let results = Results(used)
        let replicas = Array(self.replicas.prefix(used))
        struct Unchecked<T>: @unchecked Sendable { let value: T }
        let shared = Unchecked(value: (replicas, pieces))
        let threads = Swift.max(1, Tandem.numThreads / used)
        DispatchQueue.concurrentPerform(iterations: used) { k in
            let (replicas, pieces) = shared.value
            // Grad mode is task-local: carry the caller's into the worker thread.
            results.set(k, Result {
                try Tandem.withThreadLimit(threads) {
                    gradEnabled ? try replicas[k](pieces[k]) : try Tensor.withNoGrad { try replicas[k](pieces[k]) }
                }
            })
        }
        if let error = results.errors.compactMap({ $0 }).first { throw error }
        return try Tensor.cat(results.outputs.map { $0! }, axis: 0)
    }
}
