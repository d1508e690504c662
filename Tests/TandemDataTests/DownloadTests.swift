import Foundation
import Testing
import TandemData
import TandemTestSupport

@Suite struct DownloadTests {
    static var repoRoot: String { Golden.folder.replacingOccurrences(of: "/Tests/Fixtures/golden", with: "") }

    func temporaryFolder() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("dl-\(UUID().uuidString)").path
    }

    @Test func downloadsFromAMirrorAndVerifiesChecksums() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // A local mirror (file://) with the vendored files: every checksum must verify.
        try MNIST.download(to: folder, mirrors: ["file://" + Self.repoRoot + "/Data/mnist/"])
        #expect(try MNIST(folder: folder, train: false).count == 10000)
    }

    @Test func corruptMirrorFailsTheChecksum() throws {
        let mirror = temporaryFolder(), folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: mirror); try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: mirror, withIntermediateDirectories: true)
        for name in MNIST.checksums.keys {
            try FileManager.default.copyItem(atPath: Self.repoRoot + "/Data/mnist/" + name, toPath: mirror + "/" + name)
        }
        // Swap two files: both are valid gzip, neither has the right checksum.
        try FileManager.default.removeItem(atPath: mirror + "/t10k-labels-idx1-ubyte.gz")
        try FileManager.default.copyItem(atPath: Self.repoRoot + "/Data/mnist/train-labels-idx1-ubyte.gz",
                                         toPath: mirror + "/t10k-labels-idx1-ubyte.gz")
        #expect { try MNIST.download(to: folder, mirrors: ["file://" + mirror + "/"]) } throws: {
            "\($0)".contains("MD5") && "\($0)".contains("t10k-labels")
        }
    }

    @Test func offlineIsAClearErrorNotAHang() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Port 9 on loopback refuses connections at once.
        #expect { try MNIST.download(to: folder, mirrors: ["http://127.0.0.1:9/"], timeout: 5) } throws: {
            "\($0)".contains("cannot download") && "\($0)".contains("offline")
        }
    }
}
