import Dispatch
import TandemDistributed
import TandemNN

/// DDP's reducer: averages the gradients of a backward pass over the group in buckets while
/// backward goes on (PyTorch's `Reducer`).
///
/// Parameters are grouped into flat buckets in reverse registration order (roughly the order
/// backward produces their gradients): the first bucket is capped at 1 MB so communication
/// starts early, the rest at `capBytes`. Each parameter's place (bucket and element offset) is
/// computed once. A gradient is copied into its place; when a bucket is complete, and every
/// bucket before it has started, its all-reduce starts. The group takes the bucket's storage
/// (no copy) and hands it back reduced; the last bucket is reduced on the calling thread.
/// After the last one the averaged gradients are written back as views of the buckets.
final class GradientReducer {
    /// Where a parameter's gradient lives in the buckets.
    struct Slot {
        let bucket: Int
        let offset: Int
        let count: Int
    }

    struct Bucket {
        /// Parameter indices, in the order their slots are laid out.
        let members: [Int]
        /// The flat gradients (and, in bucket 0, the buffers that ride along). Empty while
        /// the group owns it for an asynchronous all-reduce.
        var flat: Tensor
        /// Members whose gradient has not arrived in this iteration.
        var pending: Int
        /// The asynchronous all-reduce in flight, if any.
        var work: Work<Tensor>?
    }

    /// Where one iteration stands.
    enum Phase {
        /// No gradient has arrived since the last reset.
        case idle
        /// Gradients are arriving; buckets `0..<launched` have started their all-reduce.
        case collecting(launched: Int)
        /// Every bucket was reduced and the gradients were written back.
        case reduced
        /// An all-reduce failed; the error is thrown by the next call into DDP.
        case failed(any Error)
    }

    /// How this iteration's buckets are reduced.
    struct Reduction {
        /// Divide the sum by this (nil: average over the group inside the collective).
        var divisor: Int?
        /// Whether bucket 0 carries rank 0's buffers this iteration.
        var carryingBuffers: Bool
    }

    let group: any ProcessGroup
    let parameters: [(String, Parameter)]
    let slots: [Slot]
    private(set) var buckets: [Bucket]
    private(set) var phase: Phase = .idle
    private var arrived: [Bool]
    private var reduction = Reduction(divisor: nil, carryingBuffers: false)
    /// Carries the buffers in bucket 0 after its gradients (nil: they are broadcast instead).
    let bufferSync: BufferSync?
    /// Where bucket 0's buffer section starts.
    private let bufferSection: Int

    /// Seconds the last reduction spent blocked in all-reduces (the last bucket in place and the
    /// waits for the others).
    private(set) var communicationSeconds = 0.0

    /// Buckets for `parameters`; `bufferSync` (float32/float64 buckets only) makes room for the
    /// buffers after bucket 0's gradients.
    init(parameters: [(String, Parameter)], group: any ProcessGroup, capBytes: Int, bufferSync: BufferSync?) {
        self.group = group
        self.parameters = parameters
        arrived = Array(repeating: false, count: parameters.count)
        var slots = [Slot?](repeating: nil, count: parameters.count)
        var buckets: [Bucket] = []
        var current: [Int] = []
        var bytes = 0, cap = Swift.min(capBytes, 1_048_576)
        func close() {
            guard let first = current.first else { return }
            var total = 0
            for i in current {
                let n = parameters[i].1.value.count
                slots[i] = Slot(bucket: buckets.count, offset: total, count: n)
                total += n
            }
            buckets.append(Bucket(members: current, flat: Tensor.zeros([total], dtype: parameters[first].1.value.dtype), pending: current.count))
            current = []
            bytes = 0
            cap = capBytes
        }
        for i in parameters.indices.reversed() {
            let p = parameters[i].1.value
            if let first = current.first, parameters[first].1.value.dtype != p.dtype { close() }
            current.append(i)
            bytes += p.count * p.dtype.byteSize
            if bytes >= cap { close() }
        }
        close()
        self.slots = slots.map { $0! }
        if let sync = bufferSync, let first = buckets.first, [DType.float32, .float64].contains(first.flat.dtype) {
            self.bufferSync = sync
            bufferSection = first.flat.count
            buckets[0].flat = Tensor.zeros([first.flat.count + sync.elementCount], dtype: first.flat.dtype)
        } else {
            self.bufferSync = nil
            bufferSection = 0
        }
        self.buckets = buckets
    }

    /// True when some but not all buckets of this iteration have started: the backward pass
    /// left parameters without a gradient.
    var isPartial: Bool {
        if case let .collecting(launched) = phase { return launched > 0 && launched < buckets.count }
        return false
    }

    /// True while gradients are still expected (collecting, not every bucket started).
    var isIncomplete: Bool {
        if case .collecting = phase { return true }
        return false
    }

    /// True once every bucket of this iteration was reduced and written back.
    var isReduced: Bool {
        if case .reduced = phase { return true }
        return false
    }

    /// True when the last iteration reduced bucket 0 with rank 0's buffers in it: every rank
    /// now holds them.
    var deliveredBuffers: Bool { isReduced && reduction.carryingBuffers }

    /// The error of a failed all-reduce, if any.
    var failure: (any Error)? {
        if case let .failed(error) = phase { return error }
        return nil
    }

    /// The names of the parameters whose gradient has not arrived in this iteration.
    var missing: [String] { parameters.indices.filter { !arrived[$0] }.map { parameters[$0].0 } }

    /// Forgets the last iteration (keeps a failure) and sets how the next one reduces.
    func reset(_ next: Reduction) {
        if case .failed = phase { return }
        for b in buckets.indices {
            buckets[b].pending = buckets[b].members.count
            buckets[b].work = nil
        }
        for i in arrived.indices { arrived[i] = false }
        reduction = next
        communicationSeconds = 0
        phase = .idle
    }

    /// Whether gradient `index` has arrived in this iteration.
    func hasArrived(_ index: Int) -> Bool { arrived[index] }

    /// Places a gradient (nil: zeros, for a parameter the forward pass did not use), starts
    /// every bucket that is complete in order, and after the last one writes the gradients back.
    func add(_ index: Int, gradient: Tensor?) {
        if case .failed = phase { return }
        guard !arrived[index] else { return }
        arrived[index] = true
        if case .idle = phase { phase = .collecting(launched: 0) }
        let slot = slots[index]
        do {
            try write(gradient, into: slot)
            buckets[slot.bucket].pending -= 1
            try launchCompleteBuckets()
        } catch {
            phase = .failed(error)
        }
    }

    private func write(_ gradient: Tensor?, into slot: Slot) throws {
        let dtype = buckets[slot.bucket].flat.dtype
        if let gradient {
            let source = gradient.to(dtype)
            switch dtype {
            case .float64: try copy(source, Double.self, into: slot)
            default: try copy(source, Float.self, into: slot)
            }
        } else {
            switch dtype {
            case .float64: try fill(Double.self, slot)
            default: try fill(Float.self, slot)
            }
        }
    }

    private func copy<T: BinaryFloatingPoint>(_ source: Tensor, _: T.Type, into slot: Slot) throws {
        try source.withUnsafeBufferPointer(as: T.self) { s in
            try buckets[slot.bucket].flat.withUnsafeMutableBufferPointer(as: T.self) { d in
                _ = UnsafeMutableBufferPointer(rebasing: d[slot.offset..<(slot.offset + slot.count)]).initialize(from: s)
            }
        }
    }

    private func fill<T: BinaryFloatingPoint>(_: T.Type, _ slot: Slot) throws {
        try buckets[slot.bucket].flat.withUnsafeMutableBufferPointer(as: T.self) { d in
            UnsafeMutableBufferPointer(rebasing: d[slot.offset..<(slot.offset + slot.count)]).update(repeating: 0)
        }
    }

    private func launchCompleteBuckets() throws {
        guard case var .collecting(launched) = phase else { return }
        // Buffers ride in bucket 0 and must not be averaged: then every bucket is summed and
        // the divisor applied when the gradients are written back.
        let op: ReduceOp = reduction.divisor == nil && !reduction.carryingBuffers ? .average : .sum
        while launched < buckets.count && buckets[launched].pending == 0 {
            if launched == 0, let sync = bufferSync {
                try sync.encode(into: &buckets[0].flat, at: bufferSection, isRoot: reduction.carryingBuffers && group.rank == 0)
            }
            if launched == buckets.count - 1 {
                // Backward is over: reduce here instead of handing off to the group's thread and waiting.
                try timed { try group.allReduce(&buckets[launched].flat, op: op) }
            } else {
                var taken = Tensor.zeros([0], dtype: buckets[launched].flat.dtype)
                swap(&taken, &buckets[launched].flat)
                buckets[launched].work = group.allReduceAsync(consume taken, op: op, timeout: nil)
            }
            launched += 1
            phase = .collecting(launched: launched)
        }
        if launched == buckets.count { try writeBack() }
    }

    /// Waits for the buckets in flight, takes their storage back, applies the divisor and sets
    /// each parameter's gradient to its view of the bucket.
    private func writeBack() throws {
        for b in buckets.indices {
            if let work = buckets[b].work {
                buckets[b].flat = try timed { try work.wait() }
                buckets[b].work = nil
            }
            if b == 0 && reduction.carryingBuffers, let sync = bufferSync {
                try sync.decode(from: buckets[0].flat, at: bufferSection)
            }
            if let divisor = reduction.divisor ?? (reduction.carryingBuffers ? group.worldSize : nil) {
                try scale(&buckets[b].flat, by: 1 / Double(divisor))
            }
            let flat = buckets[b].flat
            for i in buckets[b].members {
                let slot = slots[i], p = parameters[i].1
                try p.value.setGrad(flat.narrow(axis: 0, start: slot.offset, length: slot.count).reshape(p.shape))
            }
        }
        phase = .reduced
    }

    /// Gives zeros for every bucket: a rank that has left `join` shadowing one iteration of the
    /// ranks still training.
    func reduceZeros(op: ReduceOp) throws {
        for bucket in buckets {
            var zeros = Tensor.zeros(bucket.flat.shape, dtype: bucket.flat.dtype)
            try group.allReduce(&zeros, op: op)
        }
    }

    private func scale(_ flat: inout Tensor, by factor: Double) throws {
        switch flat.dtype {
        case .float64: try flat.withUnsafeMutableBufferPointer(as: Double.self) { d in for j in d.indices { d[j] *= factor } }
        default:
            let f = Float(factor)
            try flat.withUnsafeMutableBufferPointer(as: Float.self) { d in for j in d.indices { d[j] *= f } }
        }
    }

    private func timed<R>(_ body: () throws -> R) rethrows -> R {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { communicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        return try body()
    }
}
