// swift-tools-version:6.0
// Tandem: a deep-learning training framework in Swift for Linux.
import PackageDescription

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "Tandem",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "TandemCore", targets: ["TandemCore"]),
        .library(name: "TandemNN", targets: ["TandemNN"]),
        .library(name: "TandemOptim", targets: ["TandemOptim"]),
        .library(name: "TandemData", targets: ["TandemData"]),
        .library(name: "TandemDistributed", targets: ["TandemDistributed"]),
        .library(name: "TandemModels", targets: ["TandemModels"]),
        .library(name: "TandemParallel", targets: ["TandemParallel"]),
        .library(name: "TandemTrain", targets: ["TandemTrain"]),
        .library(name: "TandemLaunch", targets: ["TandemLaunch"]),
        // `import Tandem`: every library above in one import (Sources/Tandem/Tandem.swift).
        .library(name: "Tandem", targets: ["Tandem"]),
        .executable(name: "tandem", targets: ["TandemCLI"]),
        .executable(name: "tandem-bench", targets: ["TandemBench"]),
        .executable(name: "tandem-selftest", targets: ["TandemSelfTest"]),
        // The seed's programs as examples to copy (Examples/README.md).
        .executable(name: "mnist", targets: ["mnist"]),
        .executable(name: "mnist-ddp-tcp", targets: ["mnist-ddp-tcp"]),
        .executable(name: "mnist-ddp-env", targets: ["mnist-ddp-env"]),
        .executable(name: "cifar10", targets: ["cifar10"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Native libraries, imported through module maps (Debian packages; see scripts/setup.sh).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas"),
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .systemLibrary(name: "COpenMP", path: "Sources/COpenMP"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c"),

        // Core tensor, kernels and reverse-mode autograd.
        .target(name: "TandemCore", dependencies: ["CBLAS", "CDNNL", "COpenMP"]),
        // Layers and losses (Module, Linear, Conv2d, ...).
        .target(name: "TandemNN", dependencies: ["TandemCore"]),
        // Optimizers and learning-rate schedulers.
        .target(name: "TandemOptim", dependencies: ["TandemCore", "TandemNN"]),
        // Datasets, samplers and the DataLoader.
        .target(name: "TandemData", dependencies: ["TandemCore", "CZlib"]),
        // Process groups, rendezvous and collectives.
        .target(name: "TandemDistributed", dependencies: ["TandemCore", "CGloo", "CMPI"]),
        // Tiny C API over Gloo (C++); catches every C++ exception.
        .target(
            name: "CGloo",
            path: "Sources/CGloo",
            linkerSettings: [.linkedLibrary("gloo"), .linkedLibrary("pthread")]),
        // Data-parallel training: DistributedDataParallel, SyncBatchNorm, distributed evaluation.
        .target(name: "TandemParallel", dependencies: ["TandemNN", "TandemOptim", "TandemData", "TandemDistributed"]),
        // The model zoo.
        .target(name: "TandemModels", dependencies: ["TandemCore", "TandemNN"]),
        // Training driver: loop, checkpoints, metrics, plots, progress.
        .target(name: "TandemTrain", dependencies: ["TandemCore", "TandemNN", "TandemOptim", "TandemData", "TandemDistributed",
                                                    "TandemModels", "TandemParallel"]),
        // The launcher (`tandem run`): starts and supervises the processes of a job.
        .target(name: "TandemLaunch"),
        // The umbrella module: re-exports the libraries, like `import torch`.
        .target(name: "Tandem", dependencies: ["TandemCore", "TandemNN", "TandemOptim", "TandemData", "TandemDistributed",
                                               "TandemParallel", "TandemModels", "TandemTrain", "TandemLaunch"]),
        // The `tandem` command-line tool (the executable is the product's name, `tandem`).
        .executableTarget(
            name: "TandemCLI",
            dependencies: [
                "TandemCore", "TandemNN", "TandemOptim", "TandemData", "TandemDistributed", "TandemParallel", "TandemModels",
                "TandemTrain", "TandemLaunch", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/tandem"),
        // Benchmarks (`tandem-bench`; `tandem bench` runs it) and the distributed tests' worker
        // (`tandem-selftest`): executables of their own, out of the product `tandem`.
        .executableTarget(
            name: "TandemBench",
            dependencies: ["TandemCore", "TandemNN", "TandemOptim", "TandemData", "TandemDistributed", "TandemParallel",
                           "TandemModels", "TandemTrain", "TandemLaunch", argumentParser]),
        .executableTarget(
            name: "TandemSelfTest",
            dependencies: ["TandemCore", "TandemNN", "TandemOptim", "TandemDistributed", "TandemParallel", "TandemLaunch", argumentParser]),

        // Examples: the seed's training programs, each one main.swift with an explicit training loop.
        .executableTarget(
            name: "mnist", dependencies: ["TandemData", "TandemModels", "TandemNN", "TandemOptim", argumentParser],
            path: "Examples/MNIST"),
        .executableTarget(
            name: "mnist-ddp-tcp", dependencies: ["TandemData", "TandemModels", "TandemNN", "TandemOptim", "TandemDistributed", "TandemParallel", argumentParser],
            path: "Examples/MNISTDistributedTCP"),
        .executableTarget(
            name: "mnist-ddp-env", dependencies: ["TandemData", "TandemModels", "TandemNN", "TandemOptim", "TandemDistributed", "TandemParallel", argumentParser],
            path: "Examples/MNISTDistributedEnv"),
        .executableTarget(
            name: "cifar10", dependencies: ["TandemData", "TandemModels", "TandemNN", "TandemOptim", "TandemDistributed", "TandemParallel", argumentParser],
            path: "Examples/CIFAR10"),

        // Shared test helpers: gradient checker, closeness assertions, golden-file loader.
        .target(name: "TandemTestSupport", dependencies: ["TandemCore"], path: "Sources/TandemTestSupport"),
        .testTarget(
            name: "TandemCoreTests",
            dependencies: ["TandemCore", "TandemTestSupport"]),
        .testTarget(
            name: "TandemNNTests",
            dependencies: ["TandemNN", "TandemTestSupport"]),
        .testTarget(
            name: "TandemOptimTests",
            dependencies: ["TandemOptim", "TandemTestSupport"]),
        .testTarget(
            name: "TandemModelsTests",
            dependencies: ["TandemModels", "TandemOptim", "TandemTestSupport"]),
        .testTarget(
            name: "TandemTrainTests",
            dependencies: ["TandemTrain", "TandemTestSupport"]),
        .testTarget(
            name: "TandemParallelTests",
            dependencies: ["TandemParallel", "TandemData", "TandemModels", "TandemOptim", "TandemTestSupport"]),
        .testTarget(
            name: "TandemDataTests",
            dependencies: ["TandemData", "TandemTestSupport"]),
        .testTarget(
            name: "TandemDistributedTests",
            dependencies: ["TandemDistributed", "TandemTestSupport"]),
    ],
    cxxLanguageStandard: .cxx17
)
