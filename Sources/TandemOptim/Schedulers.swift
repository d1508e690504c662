import Foundation
import TandemNN

/// A learning-rate schedule: `lr(epoch)` for the optimizer's base rate. `step()` advances the
/// epoch and sets the optimizer's rate, as PyTorch's `scheduler.step()` after `opt.step()`.
public protocol LRSchedule: AnyObject {
    /// Rate after `epoch` calls of `step()`.
    func rate(at epoch: Int) -> Double
    var optimizer: any Optimizer { get }
    var epoch: Int { get set }
}

extension LRSchedule {
    /// Advances one epoch and sets the optimizer's learning rate.
    public func step() {
        epoch += 1
        optimizer.learningRate = rate(at: epoch)
    }
}

/// `lr = base · gamma^⌊epoch / stepSize⌋`.
public final class StepLR: LRSchedule {
    public let optimizer: any Optimizer
    public var epoch = 0
    let base: Double, stepSize: Int, gamma: Double
    public init(_ optimizer: any Optimizer, stepSize: Int, gamma: Double = 0.1) throws {
        guard stepSize > 0 else { throw TensorError.invalidArgument(op: "StepLR", message: "stepSize must be positive, got \(stepSize)") }
        self.optimizer = optimizer; base = optimizer.learningRate; self.stepSize = stepSize; self.gamma = gamma
    }
    public func rate(at epoch: Int) -> Double { base * Foundation.pow(gamma, Double(epoch / stepSize)) }
}

/// `lr = base · gamma^(number of milestones ≤ epoch)`.
public final class MultiStepLR: LRSchedule {
    public let optimizer: any Optimizer
    public var epoch = 0
    let base: Double, milestones: [Int], gamma: Double
    public init(_ optimizer: any Optimizer, milestones: [Int], gamma: Double = 0.1) {
        self.optimizer = optimizer; base = optimizer.learningRate; self.milestones = milestones.sorted(); self.gamma = gamma
    }
    public func rate(at epoch: Int) -> Double { base * Foundation.pow(gamma, Double(milestones.filter { $0 <= epoch }.count)) }
}

/// `lr = etaMin + (base - etaMin)(1 + cos(π·epoch/tMax))/2` (continuing past tMax like PyTorch).
public final class CosineAnnealingLR: LRSchedule {
    public let optimizer: any Optimizer
    public var epoch = 0
    let base: Double, tMax: Int, etaMin: Double
    public init(_ optimizer: any Optimizer, tMax: Int, etaMin: Double = 0) throws {
        guard tMax > 0 else { throw TensorError.invalidArgument(op: "CosineAnnealingLR", message: "tMax must be positive, got \(tMax)") }
        self.optimizer = optimizer; base = optimizer.learningRate; self.tMax = tMax; self.etaMin = etaMin
    }
    public func rate(at epoch: Int) -> Double {
        etaMin + (base - etaMin) * (1 + Foundation.cos(Double.pi * Double(epoch) / Double(tMax))) / 2
    }
}

/// Linear warm-up: `lr = base · (start + (end - start) · min(epoch, total)/total)`.
public final class LinearLR: LRSchedule {
    public let optimizer: any Optimizer
    public var epoch = 0
    let base: Double, startFactor: Double, endFactor: Double, totalIters: Int
    public init(_ optimizer: any Optimizer, startFactor: Double = 1.0 / 3, endFactor: Double = 1, totalIters: Int = 5) throws {
        guard startFactor > 0, startFactor <= 1, endFactor >= 0, endFactor <= 1, totalIters > 0 else {
            throw TensorError.invalidArgument(op: "LinearLR", message: "need 0 < startFactor ≤ 1, 0 ≤ endFactor ≤ 1, totalIters > 0")
        }
        self.optimizer = optimizer; base = optimizer.learningRate
        self.startFactor = startFactor; self.endFactor = endFactor; self.totalIters = totalIters
        optimizer.learningRate = rate(at: 0)
    }
    public func rate(at epoch: Int) -> Double {
        base * (startFactor + (endFactor - startFactor) * Double(Swift.min(epoch, totalIters)) / Double(totalIters))
    }
}

/// Runs schedules one after another: the first until `milestones[0]`, the next until
/// `milestones[1]`, ...; each later schedule counts its epochs from its own start.
public final class SequentialLR: LRSchedule {
    public let optimizer: any Optimizer
    public var epoch = 0
    let schedules: [any LRSchedule], milestones: [Int]
    public init(_ optimizer: any Optimizer, schedules: [any LRSchedule], milestones: [Int]) throws {
        guard schedules.count == milestones.count + 1, milestones == milestones.sorted() else {
            throw TensorError.invalidArgument(op: "SequentialLR", message: "needs one more schedule than milestones, milestones ascending")
        }
        self.optimizer = optimizer; self.schedules = schedules; self.milestones = milestones
        optimizer.learningRate = schedules[0].rate(at: 0)
    }
    public func rate(at epoch: Int) -> Double {
        let index = milestones.filter { $0 <= epoch }.count
        let start = index == 0 ? 0 : milestones[index - 1]
        return schedules[index].rate(at: epoch - start)
    }
}
