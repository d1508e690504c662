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

    /// The largest elementwise |a − b| (tensors of the same element count).
    public static func maxAbsDiff(_ a: Tensor, _ b: Tensor) -> Double {
        zip(a.toDoubleArray(), b.toDoubleArray()).reduce(0) { Swift.max($0, Swift.abs($1.0 - $1.1)) }
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
    /// Nil when `actual` matches the golden tensor `name` (reshaped to the golden shape when
    /// the counts agree, e.g. a loss of shape [] against a stored (1,)), else what differs;
    /// a nil `actual` (a missing gradient) is a mismatch too.
    public func mismatch(_ actual: Tensor?, _ name: String, rtol: Double, atol: Double) throws -> String? {
        let expected = try tensor(name)
        guard let actual else { return "\(name): no value (missing gradient?)" }
        let shaped = actual.count == expected.count ? try actual.reshape(expected.shape) : actual
        return Closeness.mismatch(shaped, expected, rtol: rtol, atol: atol, name)
    }

    /// The tensor called `name`, or an error naming the missing tensor.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else {
            throw TensorError.invalidData("golden file has no tensor '\(name)'")
        }
        return t
    }
}
