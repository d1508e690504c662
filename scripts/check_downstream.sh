#!/usr/bin/env bash
# Uses Tandem the way a user's package does, through its products only:
#  1. Examples/Downstream (a package in this repository that depends on `..`) builds and
#     trains 20 DDP steps on 2 processes;
#  2. a fresh package made in a temporary folder outside the repository, depending on it with
#     .package(path:), resolves, builds and trains 20 DDP steps on 2 processes;
#  3. in that package, the executable target DocArticles compiles the code of every ```swift
#     block of the DocC articles (Sources/Tandem/Tandem.docc/*.md), extracted by
#     scripts/extract_doc_articles.sh (compiled only, not run).
# A product that Package.swift does not export fails here. Run from anywhere; needs the
# system packages of scripts/setup.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
swift build --product tandem >/dev/null
tandem="$repo/.build/debug/tandem"

run20() {  # $1: the DownstreamDDP executable
  local output
  output=$("$tandem" run --standalone --nproc-per-node 2 -- "$1" --data-dir "$repo/Data/mnist" --max-steps 20 2>&1) || {
    echo "$output" >&2; return 1; }
  grep -q "downstream DDP: 20 steps on 2 processes" <<<"$output" || { echo "$output" >&2; return 1; }
  grep "downstream DDP" <<<"$output"
}

echo "check_downstream: Examples/Downstream"
swift build --package-path Examples/Downstream >/dev/null
run20 "$repo/Examples/Downstream/.build/debug/DownstreamDDP"

outside=$(mktemp -d)
trap 'rm -rf "$outside"' EXIT
echo "check_downstream: a new package in $outside"
mkdir -p "$outside/Sources/DownstreamDDP"
cp Examples/Downstream/Sources/DownstreamDDP/main.swift "$outside/Sources/DownstreamDDP/"
bash "$repo/scripts/extract_doc_articles.sh" "$outside/Sources/DocArticles"
cat > "$outside/Package.swift" <<SWIFT
// swift-tools-version:6.0
import PackageDescription

// The umbrella and each library product, as the articles may import any of them.
let libraries = ["Tandem", "TandemCore", "TandemNN", "TandemOptim", "TandemData", "TandemDistributed",
                 "TandemParallel", "TandemModels", "TandemTrain"]

let package = Package(
    name: "UserPackage",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "Tandem", path: "$repo")],
    targets: [
        .executableTarget(name: "DownstreamDDP", dependencies: [.product(name: "Tandem", package: "Tandem")]),
        .executableTarget(name: "DocArticles",
                          dependencies: libraries.map { Target.Dependency.product(name: \$0, package: "Tandem") }),
    ]
)
SWIFT
swift build --package-path "$outside" --product DownstreamDDP >/dev/null
run20 "$outside/.build/debug/DownstreamDDP"
echo "check_downstream: the DocC articles' code"
if ! swift build --package-path "$outside" --product DocArticles >"$outside/doc-articles.log" 2>&1; then
  cat "$outside/doc-articles.log" >&2
  echo "check_downstream: the code of an article in Sources/Tandem/Tandem.docc does not compile (see above)" >&2
  exit 1
fi
echo "check_downstream: ok"
