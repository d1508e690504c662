/// The element type of a tensor.
///
/// `float32` is the default compute type and `float64` is used for gradient checks.
/// `float16` and `bfloat16` are the mixed-precision types (see `autocast`): they convert to
/// and from the float types with round-to-nearest-even; bfloat16 matmul and convolution run
/// on oneDNN, and other ops on them compute in float32. Integer and boolean tensors hold
/// indices, labels and masks.
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case float32, float64, float16, bfloat16, int32, int64, uint8, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16: return 2
        case .uint8, .bool: return 1
        }
    }

    /// True for the four floating-point types.
    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float64, .float16, .bfloat16: return true
        default: return false
        }
    }

    /// True for the types that kernels compute in (float32, float64).
    public var isComputeType: Bool { self == .float32 || self == .float64 }

    public var description: String { rawValue }

    /// The dtype name used in safetensors headers ("F32", "I64", ...).
    public var safetensorsName: String {
        switch self {
        case .float32: return "F32"
        case .float64: return "F64"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .int32: return "I32"
        case .int64: return "I64"
        case .uint8: return "U8"
        case .bool: return "BOOL"
        }
    }

    /// Parses a safetensors dtype name; nil for names Tandem does not support.
    public init?(safetensorsName: String) {
        guard let match = DType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else {
            return nil
        }
        self = match
    }
}
