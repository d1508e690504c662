#!/bin/bash
# The main job's scaling measurement (issue 5): one epoch of the MNIST ConvNet, batch 64 per
# process, 1 thread per process, one process then 2-process DDP, then two independent
# one-process runs started together (the machine's ceiling: what two processes get with no
# communication at all), and with a PyTorch interpreter also PyTorch's two programs, ROUNDS
# times back to back. Appends every run's final JSON object to OUT/runs.jsonl (with "round"
# and "run" keys; the pair's two objects are "tandem-pair") and prints per round and as
# medians: scaling efficiency (2-process images/s ÷ 2 × 1-process images/s of the same round),
# the ceiling (the pair's summed images/s ÷ 2 × 1-process), the slower process of the pair ÷
# 1-process (lock step runs at the slower core's pace), DDP ÷ pair, and Tandem's DDP wall
# time ÷ PyTorch's. Usage (from the repository root, after `swift build -c release`):
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
    record "$round" tandem-pair "$tandem" train "${common[@]}" --out "$out/tandem-pair-a" &
    partner=$!
    record "$round" tandem-pair "$tandem" train "${common[@]}" --out "$out/tandem-pair-b"
    wait "$partner"  # a failed partner stops the script instead of leaving half a pair
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
    if d["run"] == "tandem-pair":  # two objects: sum their throughput
        pair = rounds.setdefault(d["round"], {}).setdefault("tandem-pair", {"train_images_per_second": 0.0})
        pair["train_images_per_second"] += d["train_images_per_second"]
        # The slower process of the pair: in lock step both ranks go at the slower core's pace.
        slower = rounds[d["round"]].setdefault("tandem-pair-slower", {"train_images_per_second": float("inf")})
        slower["train_images_per_second"] = min(slower["train_images_per_second"], d["train_images_per_second"])
    else:
        rounds.setdefault(d["round"], {})[d["run"]] = d
def ratio(r, a, b, key="train_images_per_second", scale=1):
    return r[a][key] / (scale * r[b][key]) if a in r and b in r else None
def efficiency(r, name):
    return ratio(r, name + "-ddp", name + "-1", scale=2)
print("| round | Tandem efficiency | ceiling (pair ÷ 2 × one) | slower of the pair ÷ one | Tandem DDP ÷ pair | PyTorch efficiency | Tandem DDP wall ÷ PyTorch DDP wall |")
print("|---|---|---|---|---|---|---|")
columns = {k: [] for k in ("tandem", "ceiling", "slower", "ddp-pair", "torch", "wall")}
pct = lambda v: "" if v is None else f"{100 * v:.1f}%"
num = lambda v: "" if v is None else f"{v:.2f}"
for k in sorted(rounds):
    r = rounds[k]
    values = {"tandem": efficiency(r, "tandem"),
              "ceiling": ratio(r, "tandem-pair", "tandem-1", scale=2),
              "slower": ratio(r, "tandem-pair-slower", "tandem-1"),
              "ddp-pair": ratio(r, "tandem-ddp", "tandem-pair"),
              "torch": efficiency(r, "torch"),
              "wall": ratio(r, "tandem-ddp", "torch-ddp", key="wall_seconds")}
    for key, v in values.items():
        if v is not None: columns[key].append(v)
    print(f"| {k} | {pct(values['tandem'])} | {pct(values['ceiling'])} | {pct(values['slower'])} | {pct(values['ddp-pair'])} "
          f"| {pct(values['torch'])} | {num(values['wall'])} |")
median = lambda xs: statistics.median(xs) if xs else None
print(f"| median | {pct(median(columns['tandem']))} | {pct(median(columns['ceiling']))} | {pct(median(columns['slower']))} "
      f"| {pct(median(columns['ddp-pair']))} "
      f"| {pct(median(columns['torch']))} | {num(median(columns['wall']))} |")
PY
