import TandemDistributed
import TandemNN

/// Construction-time checks and the parameter and buffer broadcasts.
extension DistributedDataParallel {
    /// Every rank checks that all ranks hold the same parameter names and shapes as rank 0.
    static func verifySameModel(_ processGroup: any ProcessGroup, _ named: [(String, Parameter)]) throws {
        let description = named.map { "\($0.0)\($0.1.shape)" }.joined(separator: ";")
        let mine = Array(description.utf8).map(Double.init)
        let length = try processGroup.broadcast(Tensor([Double(mine.count)], shape: [1], dtype: .float64), root: 0)
        let rootLength = Int(try length.item())
        var mismatch = 0.0
        var message = ""
        if rootLength != mine.count && processGroup.rank != 0 {
            mismatch = 1
        }
        let padded = Tensor((mine + [Double](repeating: 0, count: Swift.max(0, rootLength - mine.count))).prefix(rootLength).map { $0 },
                            shape: [rootLength], dtype: .float64)
        let rootBytes = try processGroup.broadcast(padded, root: 0).toDoubleArray().map { UInt8($0) }
        let rootDescription = String(decoding: rootBytes, as: UTF8.self)
        if rootDescription != description {
            mismatch = 1
            let theirs = rootDescription.split(separator: ";"), ours = description.split(separator: ";")
            let i = Array(zip(theirs, ours)).firstIndex { $0.0 != $0.1 } ?? Swift.min(theirs.count, ours.count)
            let a = i < theirs.count ? String(theirs[i]) : "nothing", b = i < ours.count ? String(ours[i]) : "nothing"
            message = "parameter \(i) is \(b) here but \(a) on rank 0"
        }
        // Every rank learns whether any rank differs, so they fail together instead of hanging.
        let any = try processGroup.allReduce(Tensor([mismatch], shape: [1], dtype: .float64), op: .max)
        if try any.item() > 0 {
            throw DataParallelError.modelMismatch(rank: processGroup.rank, message: message.isEmpty ? "another rank's parameters differ from rank 0's" : message)
        }
    }

    func broadcastState() throws {
        for (_, p) in named {
            let value = try processGroup.broadcast(p.value.detach(), root: 0)
            try p.value.copyValues(from: value)
        }
        try broadcastBufferValues()
    }

    /// Broadcasts the buffers from `root` coalesced, one collective per dtype (like PyTorch's
    /// `_sync_buffers`): a ConvNet's six BatchNorm buffers cost two broadcasts per step, not six.
    func broadcastBufferValues(root: Int = 0) throws {
        let buffers = module.namedBuffers().map(\.1)
        for dtype in [DType.float32, .float64, .int64] {
            let same = buffers.filter { $0.value.dtype == dtype }
            if same.count == 1 { same[0].value = try processGroup.broadcast(same[0].value, root: root) }
            guard same.count > 1 else { continue }
            let flat = try processGroup.broadcast(Tensor.cat(same.map { try $0.value.flatten() }), root: root)
            var offset = 0
            for b in same {
                var value = b.value
                try value.copyValues(from: flat.narrow(axis: 0, start: offset, length: value.count).reshape(value.shape))
                b.value = value
                offset += value.count
            }
        }
    }

}
