import Foundation

/// 2-D convolution: `[N, inChannels, H, W] → [N, outChannels, H', W']`. Parameters `weight`
/// `[outChannels, inChannels/groups, kH, kW]` and `bias` `[outChannels]`, initialised like PyTorch.
public final class Conv2d: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: [Int], padding: [Int], dilation: [Int], groups: Int
    public var isTraining = true

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true, generator: Generator = .default) {
        let fanIn = inChannels / max(groups, 1) * kernelSize * kernelSize
        weight = Parameter(DefaultInit.uniform([outChannels, inChannels / max(groups, 1), kernelSize, kernelSize], fanIn: fanIn, generator: generator))
        self.bias = bias ? Parameter(DefaultInit.uniform([outChannels], fanIn: fanIn, generator: generator)) : nil
        self.stride = [stride]; self.padding = [padding]; self.dilation = [dilation]; self.groups = groups
    }

    public var localParameters: [(String, Parameter)] { [("weight", weight)] + (bias.map { [("bias", $0)] } ?? []) }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try Tensor.conv2d(input, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
                          dilation: dilation, groups: groups)
    }
}

/// 1-D convolution: `[N, inChannels, L] → [N, outChannels, L']`.
public final class Conv1d: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: Int, padding: Int, dilation: Int, groups: Int
    public var isTraining = true

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true, generator: Generator = .default) {
        let fanIn = inChannels / max(groups, 1) * kernelSize
        weight = Parameter(DefaultInit.uniform([outChannels, inChannels / max(groups, 1), kernelSize], fanIn: fanIn, generator: generator))
        self.bias = bias ? Parameter(DefaultInit.uniform([outChannels], fanIn: fanIn, generator: generator)) : nil
        self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
    }

    public var localParameters: [(String, Parameter)] { [("weight", weight)] + (bias.map { [("bias", $0)] } ?? []) }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try Tensor.conv1d(input, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
                          dilation: dilation, groups: groups)
    }
}

/// Max pooling over `[N, C, H, W]` windows.
public final class MaxPool2d: Module {
    public let kernelSize: Int, stride: Int, padding: Int
    public var isTraining = true
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernelSize = kernelSize; self.stride = stride ?? kernelSize; self.padding = padding
    }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try input.maxPool2d(kernelSize: [kernelSize], stride: [stride], padding: [padding])
    }
}

/// Average pooling over `[N, C, H, W]` windows.
public final class AvgPool2d: Module {
    public let kernelSize: Int, stride: Int, padding: Int
    public var isTraining = true
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernelSize = kernelSize; self.stride = stride ?? kernelSize; self.padding = padding
    }
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try input.avgPool2d(kernelSize: [kernelSize], stride: [stride], padding: [padding])
    }
}

/// Adaptive average pooling to a fixed `[outH, outW]`.
public final class AdaptiveAvgPool2d: Module {
    public let outputSize: [Int]
    public var isTraining = true
    public init(_ outputSize: [Int]) { self.outputSize = outputSize }
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try input.adaptiveAvgPool2d(outputSize: outputSize) }
}
