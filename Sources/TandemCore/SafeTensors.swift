import Foundation

/// Reading and writing the safetensors format: an 8-byte little-endian header length,
/// a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`,
/// then the raw little-endian row-major bytes.
public enum SafeTensors {
    /// A decoded file: named tensors (in file order) and the string metadata.
    public struct File: Sendable {
        public var tensors: [String: Tensor]
        public var order: [String]
        public var metadata: [String: String]
    }

    /// Errors naming the file and what is wrong with it.
    public enum Error: Swift.Error, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        case corrupt(path: String, reason: String)

        public var description: String {
            switch self {
            case let .unreadable(path, reason): return "cannot read safetensors file '\(path)': \(reason)"
            case let .corrupt(path, reason): return "safetensors file '\(path)' is corrupt or not a safetensors file: \(reason)"
            }
        }
    }

    /// Reads every tensor of the file at `path`.
    public static func load(path: String) throws -> File {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw Error.unreadable(path: path, reason: error.localizedDescription)
        }
        return try decode(data, path: path)
    }

    /// Decodes a safetensors byte buffer; `path` only names it in errors.
    public static func decode(_ data: Data, path: String = "<memory>") throws -> File {
        guard data.count >= 8 else { throw Error.corrupt(path: path, reason: "shorter than its 8-byte header length") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(data.count - 8), headerLength <= 100_000_000 else {
            throw Error.corrupt(path: path, reason: "header length \(headerLength) exceeds the file size \(data.count)")
        }
        let headerStart = data.startIndex + 8
        let headerData = data[headerStart..<(headerStart + Int(headerLength))]
        guard let json = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw Error.corrupt(path: path, reason: "header is not a JSON object")
        }
        let bodyStart = headerStart + Int(headerLength)
        let bodyCount = data.count - 8 - Int(headerLength)
        var file = File(tensors: [:], order: [], metadata: [:])
        if let meta = json["__metadata__"] as? [String: Any] {
            for (k, v) in meta { file.metadata[k] = "\(v)" }
        }
        var entries: [(name: String, begin: Int)] = []
        for (name, value) in json where name != "__metadata__" {
            guard let info = value as? [String: Any],
                  let dtypeName = info["dtype"] as? String,
                  let shape = (info["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  let offsets = (info["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  offsets.count == 2 else {
                throw Error.corrupt(path: path, reason: "entry '\(name)' lacks dtype, shape or data_offsets")
            }
            guard let dtype = DType(safetensorsName: dtypeName) else {
                throw Error.corrupt(path: path, reason: "entry '\(name)' has unsupported dtype \(dtypeName)")
            }
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= bodyCount else {
                throw Error.corrupt(path: path, reason: "entry '\(name)' has offsets \(offsets) outside the \(bodyCount)-byte data section")
            }
            let bytes = data[(bodyStart + offsets[0])..<(bodyStart + offsets[1])]
            do {
                file.tensors[name] = try bytes.withUnsafeBytes { try Tensor(bytes: $0, shape: shape, dtype: dtype) }
            } catch {
                throw Error.corrupt(path: path, reason: "entry '\(name)': \(error)")
            }
            entries.append((name, offsets[0]))
        }
        file.order = entries.sorted { $0.begin < $1.begin }.map(\.name)
        return file
    }

    /// Encodes tensors (in the given order) and metadata into safetensors bytes.
    public static func encode(_ tensors: [(String, Tensor)], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        var bodies: [Tensor] = []
        for (name, tensor) in tensors {
            guard name != "__metadata__", header[name] == nil else {
                throw TensorError.invalidArgument(op: "SafeTensors.encode", message: "duplicate or reserved tensor name '\(name)'")
            }
            let c = tensor.contiguousStorage()
            let bytes = c.count * c.dtype.byteSize
            header[name] = ["dtype": c.dtype.safetensorsName, "shape": c.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
            bodies.append(c)
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces so the data is 8-byte aligned
        var out = Data()
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
        out.append(json)
        for c in bodies {
            out.append(Data(bytes: c.storage.bytes + c.offset * c.dtype.byteSize, count: c.count * c.dtype.byteSize))
        }
        return out
    }

    /// Writes tensors atomically: to a temporary file in the same folder, fsync, then rename.
    public static func save(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to path: String) throws {
        let data = try encode(tensors, metadata: metadata)
        try AtomicFile.write(data, to: path)
    }
}

/// Atomic file replacement: write a temporary file beside the target, fsync it, rename it
/// over the target, fsync the folder. A crash leaves either the old or the new file.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temporary = folder + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw SafeTensors.Error.unreadable(path: path, reason: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        var failure: String?
        data.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
                if n <= 0 { failure = String(cString: strerror(errno)); return }
                written += n
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if failure == nil && rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary)
            throw SafeTensors.Error.unreadable(path: path, reason: "writing failed: \(failure)")
        }
        let dirFD = open(folder.isEmpty ? "." : folder, O_RDONLY)
        if dirFD >= 0 { fsync(dirFD); close(dirFD) }
    }
}
