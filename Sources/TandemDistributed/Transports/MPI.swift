import CMPI
import Foundation
import Synchronization
import TandemCore

/// An MPI communicator handle; used only by its transport.
private struct Communicator: @unchecked Sendable {
    let comm: MPI_Comm
}

/// Whether this process has initialized MPI (once per process).
private let mpiState = Mutex<(initialized: Bool, finalized: Bool)>((false, false))

/// The MPI transport (OpenMPI): for jobs started by `mpirun`/`srun`. MPI has no per-operation
/// timeouts; a dead rank makes `mpirun` abort the job.
final class MPITransport: Transport {
    let rank: Int
    let worldSize: Int
    var backendName: String { "mpi" }
    private let communicator: Communicator
    private let isWorld: Bool

    /// Initializes MPI (with MPI_THREAD_MULTIPLE) and wraps MPI_COMM_WORLD.
    static func world() throws -> MPITransport {
        try mpiState.withLock { state in
            if state.finalized { throw DistributedError.unsupported("MPI was finalized in this process; it cannot be initialized again") }
            if !state.initialized {
                var already: Int32 = 0
                MPI_Initialized(&already)
                if already == 0 {
                    var provided: Int32 = 0
                    let rc = MPI_Init_thread(nil, nil, tg_mpi_thread_multiple(), &provided)
                    guard rc == MPI_SUCCESS else { throw DistributedError.unsupported("MPI_Init_thread failed (code \(rc)); start the job with mpirun") }
                    guard provided >= tg_mpi_thread_multiple() else {
                        throw DistributedError.unsupported("this MPI does not provide MPI_THREAD_MULTIPLE, which Tandem's asynchronous collectives need")
                    }
                }
                state.initialized = true
            }
        }
        guard let comm = tg_mpi_comm_world() else { throw DistributedError.unsupported("MPI_COMM_WORLD is not available") }
        MPI_Comm_set_errhandler(comm, tg_mpi_errors_return())
        return MPITransport(comm: comm, isWorld: true)
    }

    private init(comm: MPI_Comm, isWorld: Bool) {
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r)
        worldSize = Int(s)
        communicator = Communicator(comm: comm)
        self.isWorld = isWorld
    }

    private var comm: MPI_Comm { communicator.comm }

    private func check(_ rc: Int32, _ op: String) throws {
        guard rc != MPI_SUCCESS else { return }
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING))
        var len: Int32 = 0
        MPI_Error_string(rc, &buffer, &len)
        let text = String(decoding: buffer.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw TransportError(message: "\(op): \(text)", peer: nil)
    }

    private func datatype(_ dtype: DType) -> MPI_Datatype {
        switch dtype {
        case .float64: return tg_mpi_double()
        case .int64: return tg_mpi_int64()
        default: return tg_mpi_float()
        }
    }

    private func mpiOp(_ op: ReduceOp) -> MPI_Op {
        switch op {
        case .sum, .average: return tg_mpi_sum()
        case .product: return tg_mpi_prod()
        case .min: return tg_mpi_min()
        case .max: return tg_mpi_max()
        }
    }

    func allReduce(_ buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp, timeout: Duration) throws {
        guard count > 0 else { return }
        try check(MPI_Allreduce(tg_mpi_in_place(), buffer.baseAddress, Int32(count), datatype(dtype), mpiOp(op), comm), "MPI_Allreduce")
    }

    func reduce(_ buffer: UnsafeMutableRawBufferPointer, count: Int, dtype: DType, op: ReduceOp, root: Int, timeout: Duration) throws {
        guard count > 0 else { return }
        if rank == root {
            try check(MPI_Reduce(tg_mpi_in_place(), buffer.baseAddress, Int32(count), datatype(dtype), mpiOp(op), Int32(root), comm), "MPI_Reduce")
        } else {
            try check(MPI_Reduce(buffer.baseAddress, nil, Int32(count), datatype(dtype), mpiOp(op), Int32(root), comm), "MPI_Reduce")
        }
    }

    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int, timeout: Duration) throws {
        guard buffer.count > 0 else { return }
        try check(MPI_Bcast(buffer.baseAddress, Int32(buffer.count), tg_mpi_byte(), Int32(root), comm), "MPI_Bcast")
    }

    func allGather(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, timeout: Duration) throws {
        guard input.count > 0 else { return }
        try check(MPI_Allgather(input.baseAddress, Int32(input.count), tg_mpi_byte(), output.baseAddress, Int32(input.count), tg_mpi_byte(), comm), "MPI_Allgather")
    }

    func gather(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer?, root: Int, timeout: Duration) throws {
        guard input.count > 0 else { return }
        try check(MPI_Gather(input.baseAddress, Int32(input.count), tg_mpi_byte(), output?.baseAddress, Int32(input.count), tg_mpi_byte(), Int32(root), comm), "MPI_Gather")
    }

    func scatter(_ input: UnsafeRawBufferPointer?, _ output: UnsafeMutableRawBufferPointer, root: Int, timeout: Duration) throws {
        guard output.count > 0 else { return }
        try check(MPI_Scatter(input?.baseAddress, Int32(output.count), tg_mpi_byte(), output.baseAddress, Int32(output.count), tg_mpi_byte(), Int32(root), comm), "MPI_Scatter")
    }

    func barrier(timeout: Duration) throws {
        try check(MPI_Barrier(comm), "MPI_Barrier")
    }

    func send(_ buffer: UnsafeRawBufferPointer, to dst: Int, tag: Int, timeout: Duration) throws {
        try check(MPI_Send(buffer.baseAddress, Int32(buffer.count), tg_mpi_byte(), Int32(dst), Int32(truncatingIfNeeded: tag), comm), "MPI_Send")
    }

    func recv(_ buffer: UnsafeMutableRawBufferPointer, from src: Int, tag: Int, timeout: Duration) throws {
        try check(MPI_Recv(buffer.baseAddress, Int32(buffer.count), tg_mpi_byte(), Int32(src), Int32(truncatingIfNeeded: tag), comm, tg_mpi_status_ignore()), "MPI_Recv")
    }

    func subTransport(ranks: [Int], name: String, timeout: Duration) throws -> (any Transport)? {
        let index = ranks.firstIndex(of: rank)
        var sub = tg_mpi_comm_null()
        try check(MPI_Comm_split(comm, index == nil ? tg_mpi_undefined() : 0, Int32(index ?? 0), &sub), "MPI_Comm_split")
        guard index != nil, let sub else { return nil }
        MPI_Comm_set_errhandler(sub, tg_mpi_errors_return())
        return MPITransport(comm: sub, isWorld: false)
    }

    /// Finalizes MPI when the world group is closed (after every rank's last collective).
    func close() {
        guard isWorld else { return }
        mpiState.withLock { state in
            guard state.initialized, !state.finalized else { return }
            state.finalized = true
            MPI_Finalize()
        }
    }
}
