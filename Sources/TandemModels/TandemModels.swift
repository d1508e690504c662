import TandemCore

/// Namespace of the TandemModels module. Its contents arrive with the issue that builds them;
/// the target exists now so that dependencies point one way from the start.
public enum TandemModels {}
