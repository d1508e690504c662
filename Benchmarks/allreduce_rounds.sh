#!/bin/bash
# Runs Tandem's, raw Gloo's (ring, and synchronous halving-doubling as Tandem drives it) and
# PyTorch's all-reduce benchmarks one after the other, ROUNDS times, appending every round to
# OUT/{tandem,raw-gloo,raw-gloo-sync,torch}.jsonl, then prints the comparison table
# (median of the rounds' medians). Alternating rounds spreads a noisy machine's slow spells over
# all three. Usage (from the repository root, after `swift build -c release`):
#   bash Benchmarks/allreduce_rounds.sh ROUNDS OUT [PYTHON_WITH_TORCH]
set -euo pipefail
rounds=${1:?rounds}; out=${2:?output folder}; python=${3:-$HOME/venv-torch/bin/python}
mkdir -p "$out"
raw="$out/raw_allreduce"
[ -x "$raw" ] || g++ -O2 -std=c++17 Benchmarks/gloo/raw_allreduce.cpp -lgloo -lpthread -o "$raw"
for _ in $(seq "$rounds"); do
    .build/release/tandem bench allreduce --json >> "$out/tandem.jsonl"
    for way in ring sync; do
        store=$(mktemp -d)
        name=raw-gloo; [ $way = sync ] && name=raw-gloo-sync
        ("$raw" 1 "$store" $way > /dev/null 2>&1 &) && "$raw" 0 "$store" $way >> "$out/$name.jsonl"
        sleep 1; rm -rf "$store"
    done
    "$python" -m torch.distributed.run --standalone --nproc-per-node 2 Benchmarks/pytorch/allreduce.py >> "$out/torch.jsonl" 2>/dev/null
done
python3 Benchmarks/compare_allreduce.py "$out/tandem.jsonl" "$out/raw-gloo.jsonl" "$out/raw-gloo-sync.jsonl" "$out/torch.jsonl"
