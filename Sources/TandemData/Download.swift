import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Downloading dataset files with checksum verification.
public enum Download {
    /// Errors that say which file and what to do instead.
    public enum Error: Swift.Error, CustomStringConvertible {
        case unavailable(url: String, reason: String, folder: String)
        case checksumMismatch(file: String, expected: String, got: String)

        public var description: String {
            switch self {
            case let .unavailable(url, reason, folder):
                return "cannot download \(url): \(reason). If this machine is offline, copy the dataset files into '\(folder)' by hand"
            case let .checksumMismatch(file, expected, got):
                return "'\(file)' has MD5 \(got), expected \(expected): the download is damaged or not the right file; delete it and retry"
            }
        }
    }

    /// Fetches `url` (http, https or file) into memory, failing after `timeout` seconds.
    static func fetch(_ url: URL, timeout: Double, folder: String) throws -> Data {
        if url.isFileURL {
            do { return try Data(contentsOf: url) } catch {
                throw Error.unavailable(url: url.absoluteString, reason: error.localizedDescription, folder: folder)
            }
        }
        final class Box: @unchecked Sendable { var result: Result<Data, any Swift.Error>? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        var request = URLRequest(url: url)
        request.timeoutInterval = timeout
        let task = URLSession.shared.dataTask(with: request) { data, response, error in
            if let error {
                box.result = .failure(error)
            } else if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
                box.result = .failure(Error.unavailable(url: url.absoluteString, reason: "HTTP status \(http.statusCode)", folder: folder))
            } else {
                box.result = .success(data ?? Data())
            }
            done.signal()
        }
        task.resume()
        guard done.wait(timeout: .now() + timeout + 1) == .success, let result = box.result else {
            task.cancel()
            throw Error.unavailable(url: url.absoluteString, reason: "no answer within \(Int(timeout)) s", folder: folder)
        }
        do { return try result.get() } catch let e as Error { throw e } catch {
            throw Error.unavailable(url: url.absoluteString, reason: error.localizedDescription, folder: folder)
        }
    }

    /// Downloads `name` from the first mirror that answers, verifies the MD5 of its
    /// (gunzipped, for .gz files) content, and writes it atomically into `folder`.
    static func file(_ name: String, mirrors: [String], md5: String, checksumOfUncompressed: Bool,
                     into folder: String, timeout: Double) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var lastError: (any Swift.Error)?
        for mirror in mirrors {
            guard let url = URL(string: mirror + name) else { continue }
            do {
                let data = try fetch(url, timeout: timeout, folder: folder)
                let content = checksumOfUncompressed ? try CompressedFile.gunzip(data, path: url.absoluteString) : data
                let digest = MD5.hex(content)
                guard digest == md5 else { throw Error.checksumMismatch(file: url.absoluteString, expected: md5, got: digest) }
                let path = folder + "/" + name
                try data.write(to: URL(fileURLWithPath: path + ".part"))
                guard rename(path + ".part", path) == 0 else {
                    throw Error.unavailable(url: url.absoluteString, reason: "cannot write \(path)", folder: folder)
                }
                return
            } catch {
                lastError = error
            }
        }
        throw lastError ?? Error.unavailable(url: name, reason: "no mirror given", folder: folder)
    }
}

extension MNIST {
    /// Mirrors that serve the four gzip files.
    public static let mirrors = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
    /// MD5 of each file's uncompressed content (mirrors' gzip bytes differ).
    public static let checksums = [
        "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
    ]

    /// Downloads any missing MNIST file into `folder`, verifying checksums. Files already
    /// present are kept. `mirrors` may be overridden (e.g. a local `file://` copy).
    public static func download(to folder: String, mirrors: [String] = MNIST.mirrors, timeout: Double = 60) throws {
        for (name, md5) in checksums.sorted(by: { $0.key < $1.key })
        where !FileManager.default.fileExists(atPath: folder + "/" + name) {
            try Download.file(name, mirrors: mirrors, md5: md5, checksumOfUncompressed: true, into: folder, timeout: timeout)
        }
    }
}

extension CIFAR10 {
    /// The official archive of the binary version.
    public static let archiveURL = "https://www.cs.toronto.edu/~kriz/"
    public static let archiveName = "cifar-10-binary.tar.gz"
    public static let archiveMD5 = "c32a1d4ab5d03f1284b67883e8d87530"

    /// Downloads and unpacks the binary CIFAR-10 archive into `folder` (which then holds
    /// `cifar-10-batches-bin/`), verifying its MD5. Needs `tar`.
    public static func download(to folder: String, mirror: String = CIFAR10.archiveURL, timeout: Double = 600) throws {
        try Download.file(archiveName, mirrors: [mirror], md5: archiveMD5, checksumOfUncompressed: false, into: folder, timeout: timeout)
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        tar.arguments = ["-xzf", folder + "/" + archiveName, "-C", folder]
        try tar.run()
        tar.waitUntilExit()
        guard tar.terminationStatus == 0 else {
            throw DatasetError.corrupt(path: folder + "/" + archiveName, reason: "tar could not unpack it (status \(tar.terminationStatus))")
        }
    }
}
