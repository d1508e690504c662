import TandemCore

/// Elementwise closeness like `numpy.allclose`; non-finite values must match exactly.
public enum Closeness {
    /// Nil when `actual` matches `expected` within `|a - e| <= atol + rtol * |e|`,
    /// else a message naming the first mismatch and the worst error.
    public static func mismatch(_ actual: Tensor, _ expected: Tensor, rtol: Double = 1e-5, atol: Double = 1e-6,
                                _ label: String = "") -> String? {
        guard actual.shape == expected.shape else {
            return "\(label): shape \(actual.shape), expected \(expected.shape)"
        }
        let a = actual.toDoubleArray(), e = expected.toDoubleArray()
        var worst = 0.0, first: String?
        for i in 0..<a.count {
            if !e[i].isFinite || !a[i].isFinite {
                let same = (a[i].isNaN && e[i].isNaN) || a[i] == e[i]
                if !same, first == nil { first = "element \(i): \(a[i]) vs \(e[i])" }
                continue
            }
            let d = Swift.abs(a[i] - e[i])
            worst = Swift.max(worst, d)
            if d > atol + rtol * Swift.abs(e[i]), first == nil { first = "element \(i): \(a[i]) vs \(e[i])" }
        }
        return first.map { "\(label): \($0) (max abs diff \(worst))" }
    }
}

/// Loads the golden reference files copied from ../shared/golden into Tests/Fixtures/golden.
public enum Golden {
    /// The fixtures folder, found from this source file's location in the repository.
    public static var folder: String {
        let here = #filePath
        let root = here.components(separatedBy: "/Sources/TandemTestSupport/").first ?? "."
        return root + "/Tests/Fixtures/golden"
    }

    /// Loads `<name>.safetensors` from the fixtures folder.
    public static func load(_ name: String) throws -> SafeTensors.File {
        try SafeTensors.load(path: folder + "/" + name + ".safetensors")
    }
}

extension SafeTensors.File {
    /// The tensor called `name`, or an error naming the missing tensor.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else {
            throw TensorError.invalidData("golden file has no tensor '\(name)'")
        }
        return t
    }
}
