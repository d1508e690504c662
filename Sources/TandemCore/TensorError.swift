/// Errors raised by tensor operations. Each message names the operation and what to fix.
public enum TensorError: Error, CustomStringConvertible, Equatable {
    /// Shapes that do not fit together, e.g. `add: shapes [2, 3] and [4] cannot be broadcast`.
    case shapeMismatch(op: String, message: String)
    /// A dtype the operation does not support, or two dtypes that do not match.
    case dtypeMismatch(op: String, message: String)
    /// An argument out of range (axis, index, size, stride...).
    case invalidArgument(op: String, message: String)
    /// Autograd misuse: backward on a tensor without a graph, a freed graph, ...
    case autograd(String)
    /// Malformed data read from outside (a file, a buffer).
    case invalidData(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, message): return "\(op): shape mismatch: \(message)"
        case let .dtypeMismatch(op, message): return "\(op): dtype mismatch: \(message)"
        case let .invalidArgument(op, message): return "\(op): invalid argument: \(message)"
        case let .autograd(message): return "autograd: \(message)"
        case let .invalidData(message): return "invalid data: \(message)"
        }
    }
}
