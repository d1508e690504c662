// `import Tandem`: the whole user-facing API in one import, as `import torch` is for PyTorch.
//
// SwiftPM has no way to declare a module that re-exports others, so this module does it with
// `@_exported import`: the underscored attribute that Swift's own umbrella modules use (and
// swift-nio's `NIO`); it is stable in practice and the only mechanism there is. Each library
// stays a product of its own, so a package that wants less (say, only `TandemCore`) imports
// only that.
@_exported import TandemCore
@_exported import TandemData
@_exported import TandemDistributed
@_exported import TandemModels
@_exported import TandemNN
@_exported import TandemOptim
@_exported import TandemParallel
@_exported import TandemTrain
@_exported import TandemLaunch
