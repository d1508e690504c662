@_exported import TandemCore

/// Layers and losses built on `TandemCore` (Module, Linear, Conv2d, BatchNorm, ...).
/// The module system arrives with the training-stack work; this target fixes the layering.
public enum TandemNN {}
