#!/bin/bash
# A/B of `tandem bench ops` between two tandem executables, ROUNDS alternating rounds (A B, B A,
# ...), so that the machine's drift favours neither. Prints, per case and thread count, the median
# ms of each and B ÷ A, and the geometric mean of the ratios.
# Usage: bash Benchmarks/ops_ab.sh ROUNDS A_EXECUTABLE B_EXECUTABLE [extra bench ops flags]
# e.g. cp .build/release/tandem /tmp/tandem-after, build the old commit elsewhere, then
#   bash Benchmarks/ops_ab.sh 5 /tmp/tandem-before /tmp/tandem-after --seconds 0.3
set -euo pipefail
rounds=${1:?rounds}; a=${2:?executable A}; b=${3:?executable B}; shift 3
out=$(mktemp -d)
for round in $(seq "$rounds"); do
    if (( round % 2 )); then order=(A B); else order=(B A); fi
    for side in "${order[@]}"; do
        if [ "$side" = A ]; then bin=$a; else bin=$b; fi
        "$bin" bench ops --json "$@" | sed "s/^{/{\"side\":\"$side\",/" >> "$out/runs.jsonl"
    done
done
python3 - "$out/runs.jsonl" <<'PY'
import json, math, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    if not line.startswith("{"): continue
    r = json.loads(line)
    runs.setdefault((r["case"], r["threads"]), {}).setdefault(r["side"], []).append(r["ms"])
ratios = []
print(f"{'case':44} thr   A ms     B ms    B/A")
for (case, threads), sides in sorted(runs.items()):
    if "A" not in sides or "B" not in sides: continue
    a, b = statistics.median(sides["A"]), statistics.median(sides["B"])
    ratios.append(b / a)
    print(f"{case:44} {threads:3} {a:8.3f} {b:8.3f} {b / a:6.3f}")
print(f"geometric mean B/A over {len(ratios)} cases: {math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f}")
PY
