#!/bin/bash
# The main job's scaling measurement (issue 5): one epoch of the MNIST ConvNet, batch 64 per
# process, 1 thread per process, one process then 2-process DDP, and with a PyTorch
# interpreter also PyTorch's two programs, ROUNDS times back to back. Appends every run's final
# JSON object to OUT/runs.jsonl (with "round" and "run" keys) and prints per-round and median
# scaling efficiency (2-process images/s ÷ 2 × 1-process images/s of the same round) and
# Tandem's DDP wall time ÷ PyTorch's. Usage (from the repository root, after
# `swift build -c release`):
#   bash Benchmarks/ddp_rounds.sh ROUNDS OUT [PYTHON_WITH_TORCH]
set -euo pipefail
rounds=${1:?rounds}; out=${2:?output folder}; python=${3:-}
mkdir -p "$out"
tandem=.build/release/tandem
common=(--model convnet --dataset mnist --epochs 1 --batch-size 64 --threads 1 --json)
record() {  # round, run name, command...
    local round=$1 name=$2; shift 2
    "$@" 2>/dev/null | tail -1 | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); d.update(round=$round, run='$name'); print(json.dumps(d))" >> "$out/runs.jsonl"
}
for round in $(seq "$rounds"); do
    record "$round" tandem-1 "$tandem" train "${common[@]}" --out "$out/tandem-1"
    record "$round" tandem-ddp "$tandem" train "${common[@]}" --nproc-per-node 2 --out "$out/tandem-ddp"
    if [ -n "$python" ]; then
        record "$round" torch-1 "$python" Benchmarks/pytorch/mnist_convnet.py --batch-size 64 --threads 1
        record "$round" torch-ddp "$python" Benchmarks/pytorch/mnist_ddp.py --nproc 2 --batch-size 64 --threads 1
    fi
done
python3 - "$out/runs.jsonl" <<'PY'
import json, statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rounds.setdefault(d["round"], {})[d["run"]] = d
def efficiency(r, name):
    one, two = r.get(name + "-1"), r.get(name + "-ddp")
    return None if not (one and two) else two["train_images_per_second"] / (2 * one["train_images_per_second"])
print("| round | Tandem efficiency | PyTorch efficiency | Tandem DDP wall ÷ PyTorch DDP wall |")
print("|---|---|---|---|")
columns = {"tandem": [], "torch": [], "wall": []}
for k in sorted(rounds):
    r = rounds[k]
    t, p = efficiency(r, "tandem"), efficiency(r, "torch")
    w = r["tandem-ddp"]["wall_seconds"] / r["torch-ddp"]["wall_seconds"] if "torch-ddp" in r and "tandem-ddp" in r else None
    for key, v in (("tandem", t), ("torch", p), ("wall", w)):
        if v is not None: columns[key].append(v)
    cell = lambda v, pct=True: "" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.2f}")
    print(f"| {k} | {cell(t)} | {cell(p)} | {cell(w, False)} |")
median = lambda xs, pct=True: "" if not xs else (f"{100 * statistics.median(xs):.1f}%" if pct else f"{statistics.median(xs):.2f}")
print(f"| median | {median(columns['tandem'])} | {median(columns['torch'])} | {median(columns['wall'], False)} |")
PY
