@_exported import TandemCore

/// A trainable tensor with identity: optimizers, hooks and DDP hold the object, and updates
/// happen in place, so the gradient accumulator survives every step.
public final class Parameter: @unchecked Sendable {
    /// The current value, a leaf that requires grad.
    public var value: Tensor

    /// Wraps `value` as a leaf that requires grad.
    public init(_ value: Tensor) { self.value = value.requiringGrad() }

    /// The gradient accumulated by backward passes since the last `zeroGrad()`.
    public var grad: Tensor? { value.grad }

    /// Shape of the value.
    public var shape: [Int] { value.shape }
}

/// A non-trainable tensor saved with the model (BatchNorm's running statistics, counters).
public final class Buffer: @unchecked Sendable {
    /// The current value.
    public var value: Tensor
    /// Wraps `value`.
    public init(_ value: Tensor) { self.value = value }
}

/// A layer or model. Modules are classes: parameters and buffers have identity.
///
/// Names follow PyTorch: a parameter `weight` of child `0` of child `layer1` is
/// `layer1.0.weight`, so state dicts move between Tandem and PyTorch unchanged.
public protocol Module: AnyObject {
    /// Direct sub-modules with their attribute names, in registration order.
    var children: [(String, any Module)] { get }
    /// This module's own parameters (not its children's), in registration order.
    var localParameters: [(String, Parameter)] { get }
    /// This module's own buffers, in registration order.
    var localBuffers: [(String, Buffer)] { get }
    /// Training mode (dropout active, batch statistics) or evaluation mode.
    var isTraining: Bool { get set }
    /// Applies the module.
    func callAsFunction(_ input: Tensor) throws -> Tensor
    /// Parameters and buffers by dotted name, module by module in registration order (each
    /// module's parameters, then its buffers, then its children's), as PyTorch's `state_dict()`.
    /// A wrapper (DDP) gives its wrapped model's.
    func stateDict() -> [(String, Tensor)]
}

extension Module {
    public var children: [(String, any Module)] { [] }
    public var localParameters: [(String, Parameter)] { [] }
    public var localBuffers: [(String, Buffer)] { [] }

    /// Every parameter with its dotted name, depth first in registration order. A parameter
    /// reachable under several names (a tied weight) appears once, under its first name, as in
    /// PyTorch's `named_parameters()`, so optimizers and DDP see it once.
    public func namedParameters() -> [(String, Parameter)] {
        var seen = Set<ObjectIdentifier>()
        return allNamedParameters().filter { seen.insert(ObjectIdentifier($0.1)).inserted }
    }

    /// Every parameter under every name it has (a tied weight once per name), depth first in
    /// registration order: the parameter entries of `stateDict()`.
    public func allNamedParameters() -> [(String, Parameter)] {
        var out = localParameters
        for (name, child) in children {
            out += child.allNamedParameters().map { ("\(name).\($0.0)", $0.1) }
        }
        return out
    }

    /// Every parameter, in `namedParameters()` order.
    public func parameters() -> [Parameter] { namedParameters().map(\.1) }

    /// Every buffer with its dotted name.
    public func namedBuffers() -> [(String, Buffer)] {
        var out = localBuffers
        for (name, child) in children {
            out += child.namedBuffers().map { ("\(name).\($0.0)", $0.1) }
        }
        return out
    }

    /// Every module in the tree with its dotted name ("" for this one), depth first.
    public func namedModules() -> [(String, any Module)] {
        var out: [(String, any Module)] = [("", self)]
        for (name, child) in children {
            out += child.namedModules().map { ($0.0.isEmpty ? name : "\(name).\($0.0)", $0.1) }
        }
        return out
    }

    /// Sets training mode on this module and all its children.
    public func train(_ on: Bool = true) {
        for (_, m) in namedModules() { m.isTraining = on }
    }

    /// Sets evaluation mode on this module and all its children.
    public func eval() { train(false) }

    /// Clears every parameter's gradient.
    public func zeroGrad() { for p in parameters() { p.value.zeroGrad() } }

    /// Parameters and buffers by PyTorch name, in PyTorch's order (each module's parameters,
    /// then its buffers, then its children). A tied weight appears under each of its names with
    /// the same values, as in PyTorch's `state_dict()`.
    public func stateDict() -> [(String, Tensor)] {
        var out = localParameters.map { ($0.0, $0.1.value.detach()) } + localBuffers.map { ($0.0, $0.1.value) }
        for (name, child) in children {
            out += child.stateDict().map { ("\(name).\($0.0)", $0.1) }
        }
        return out
    }

    /// Loads values by name. A leading `module.` (from a DDP-wrapped PyTorch model) is
    /// stripped. With `strict`, missing and unexpected names are errors; shapes must always match.
    /// A tied weight is loaded from whichever of its names is present (the first in
    /// `stateDict()` order when several are); it is missing only when none is.
    public func loadStateDict(_ state: [String: Tensor], strict: Bool = true) throws {
        var byName: [String: Tensor] = [:]
        for (k, v) in state { byName[k.hasPrefix("module.") ? String(k.dropFirst(7)) : k] = v }
        let buffers = namedBuffers()
        // Each parameter once, with the first of its names that the state dict holds.
        var params: [(String, Parameter)] = [], aliases: [ObjectIdentifier: Int] = [:]
        for (name, p) in allNamedParameters() {
            if let i = aliases[ObjectIdentifier(p)] {
                if byName[params[i].0] == nil && byName[name] != nil { params[i].0 = name }
            } else {
                aliases[ObjectIdentifier(p)] = params.count
                params.append((name, p))
            }
        }
        if strict {
            let known = Set(allNamedParameters().map(\.0) + buffers.map(\.0))
            let missing = (params.map(\.0) + buffers.map(\.0)).filter { byName[$0] == nil }.sorted()
            let unexpected = Set(byName.keys).subtracting(known).sorted()
            if !missing.isEmpty || !unexpected.isEmpty {
                throw ModuleError.stateDictMismatch(missing: missing, unexpected: unexpected)
            }
        }
        for (name, p) in params {
            guard let v = byName[name] else { continue }
            guard v.shape == p.shape else { throw ModuleError.shapeMismatch(name: name, expected: p.shape, got: v.shape) }
            try p.value.copyValues(from: v)
        }
        for (name, b) in buffers {
            guard let v = byName[name] else { continue }
            guard v.shape == b.value.shape else {
                throw ModuleError.shapeMismatch(name: name, expected: b.value.shape, got: v.shape)
            }
            try b.value.copyValues(from: v)
        }
    }
}

/// Errors from module state handling.
public enum ModuleError: Error, CustomStringConvertible, Equatable {
    case stateDictMismatch(missing: [String], unexpected: [String])
    case shapeMismatch(name: String, expected: [Int], got: [Int])

    public var description: String {
        switch self {
        case let .stateDictMismatch(missing, unexpected):
            return "state dict does not fit the model: missing \(missing), unexpected \(unexpected); check that the checkpoint was saved from this model, or load with strict: false"
        case let .shapeMismatch(name, expected, got):
            return "state dict entry '\(name)' has shape \(got), the model expects \(expected); the checkpoint comes from a different architecture"
        }
    }
}
