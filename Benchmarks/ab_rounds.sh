#!/bin/bash
# A/B test of one setting on the main job (issue 5): one epoch of the MNIST ConvNet, batch 64
# per process, 1 thread per process, one process and then 2-process DDP, under two environment
# settings A and B, ROUNDS times; the order of A and B alternates from round to round, so that
# the machine's drift over minutes does not favour either. Prints images/s and scaling
# efficiency (DDP ÷ 2 × one process) per run and their medians, and how often B beat A.
# Usage (from the repository root, after `swift build -c release`):
#   bash Benchmarks/ab_rounds.sh ROUNDS 'A_SETTINGS' 'B_SETTINGS'
# e.g. bash Benchmarks/ab_rounds.sh 8 TANDEM_HUGE_PAGES=0 TANDEM_HUGE_PAGES=1
# A setting BINARY=PATH runs that tandem executable instead of .build/release/tandem (A/B of two
# builds: copy each build's .build/release/tandem away first), e.g.
#   bash Benchmarks/ab_rounds.sh 8 BINARY=/tmp/tandem-before BINARY=/tmp/tandem-after
set -euo pipefail
rounds=${1:?rounds}; a=${2:?settings A}; b=${3:?settings B}
tandem=.build/release/tandem
common=(--model convnet --dataset mnist --epochs 1 --batch-size 64 --threads 1 --json)
out=$(mktemp -d)
# Runs tandem under the NAME=VALUE words of $1 (BINARY= picks the executable).
run() {
    local bin=$tandem words=()
    for word in $1; do
        case $word in BINARY=*) bin=${word#BINARY=} ;; *) words+=("$word") ;; esac
    done
    shift
    env "${words[@]}" "$bin" "$@"
}
rate() { tail -1 | python3 -c "import json,sys; print(json.loads(sys.stdin.read())['train_images_per_second'])"; }
for round in $(seq "$rounds"); do
    if (( round % 2 )); then order=(A B); else order=(B A); fi
    for side in "${order[@]}"; do
        if [ "$side" = A ]; then settings=$a; else settings=$b; fi
        one=$(run "$settings" train "${common[@]}" --out "$out/one" 2>/dev/null | rate)
        ddp=$(run "$settings" train "${common[@]}" --nproc-per-node 2 --out "$out/ddp" 2>/dev/null | rate)
        echo "$round $side $one $ddp" | tee -a "$out/runs.txt"
    done
done
python3 - "$out/runs.txt" "$a" "$b" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r, side, one, ddp = line.split()
    runs.setdefault(int(r), {})[side] = (float(one), float(ddp))
print(f"| | A: {sys.argv[2]} | B: {sys.argv[3]} |\n|---|---|---|")
for label, pick in [("1 process, images/s", lambda v: v[0]), ("DDP, images/s", lambda v: v[1]),
                    ("efficiency", lambda v: 100 * v[1] / (2 * v[0]))]:
    med = [statistics.median(pick(runs[r][s]) for r in runs) for s in "AB"]
    print(f"| median {label} | {med[0]:.1f} | {med[1]:.1f} |")
wins = [sum(runs[r]["B"][i] > runs[r]["A"][i] for r in runs) for i in (0, 1)]
print(f"B faster than A in the same round: 1 process {wins[0]} of {len(runs)}, DDP {wins[1]} of {len(runs)}")
PY
rm -rf "$out"
