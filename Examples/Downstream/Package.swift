// swift-tools-version:6.0
// A package outside Tandem's own, as a user's would be: it depends on Tandem only through its
// products and builds the seed's DDP MNIST program. CI builds and runs it
// (scripts/check_downstream.sh), so a missing product fails CI.
import PackageDescription

let package = Package(
    name: "Downstream",
    platforms: [.macOS(.v15)],
    dependencies: [
        // A user writes .package(url: "https://…/tandem.git", from: "…") or a path like this one.
        .package(name: "Tandem", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "DownstreamDDP",
            dependencies: [.product(name: "Tandem", package: "Tandem")]),
    ]
)
