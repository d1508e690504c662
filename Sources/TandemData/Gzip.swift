import CZlib
import Foundation

/// Reading files that may be gzip-compressed.
public enum CompressedFile {
    /// The file's bytes, decompressed when they start with the gzip magic number.
    public static func read(path: String) throws -> Data {
        let raw: Data
        do { raw = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw DatasetError.unreadable(path: path, reason: error.localizedDescription)
        }
        guard raw.count >= 2, raw[raw.startIndex] == 0x1F, raw[raw.startIndex + 1] == 0x8B else { return raw }
        return try gunzip(raw, path: path)
    }

    /// Decompresses a whole gzip stream.
    static func gunzip(_ data: Data, path: String) throws -> Data {
        var stream = z_stream()
        guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DatasetError.corrupt(path: path, reason: "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var output = Data()
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        var status: Int32 = Z_OK
        data.withUnsafeBytes { (input: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            repeat {
                buffer.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(chunk)
                    status = inflate(&stream, Z_NO_FLUSH)
                    output.append(out.baseAddress!, count: chunk - Int(stream.avail_out))
                }
            } while status == Z_OK
        }
        guard status == Z_STREAM_END else {
            throw DatasetError.corrupt(path: path, reason: "gzip data is truncated or damaged (zlib status \(status))")
        }
        return output
    }
}

/// Errors from reading datasets, each naming the file and what to do.
public enum DatasetError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case corrupt(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "cannot read dataset file '\(path)': \(reason)"
        case let .corrupt(path, reason):
            return "dataset file '\(path)' is corrupt: \(reason); delete it and download or copy it again"
        }
    }
}
