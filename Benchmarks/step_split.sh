#!/bin/bash
# Where a DDP step's time goes (issue 5): ROUNDS times, two independent one-process runs side by
# side, then a 2-process DDP run, each STEPS steps of the main job with a step record per step
# (`--log-every 1`). Prints per round the pair's mean step, the DDP rank's mean step split into
# compute and the gradient all-reduce call (`communication_seconds`: transfer plus waiting for
# the other rank), and for every run the slow bursts: steps more than 1.5 ms above the median of
# their 21-step neighbourhood, and what lock step alone would cost the pair. The first 20 steps of each run (warm-up) are left out.
# Usage (from the repository root, after `swift build -c release`):
#   bash Benchmarks/step_split.sh ROUNDS [STEPS]
set -euo pipefail
rounds=${1:?rounds}; steps=${2:-400}
tandem=.build/release/tandem
common=(train --model convnet --dataset mnist --epochs 1 --batch-size 64 --threads 1 --max-steps "$steps" --log-every 1 --json)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq "$rounds"); do
    "$tandem" "${common[@]}" --out "$out/pair-a" >/dev/null 2>&1 &
    partner=$!
    "$tandem" "${common[@]}" --out "$out/pair-b" >/dev/null 2>&1
    wait "$partner"
    "$tandem" "${common[@]}" --nproc-per-node 2 --out "$out/ddp" >/dev/null 2>&1
    python3 - "$round" "$out" <<'PY'
import json, statistics, sys
round_, out = sys.argv[1], sys.argv[2]
def steps(name):
    rows = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if '"step_seconds"' in l][20:]
    return [1000 * r["step_seconds"] for r in rows], [1000 * r.get("communication_seconds", 0) for r in rows]
def bursts(times):
    excess = [t - statistics.median(times[max(0, i - 10):i + 11]) for i, t in enumerate(times)]
    slow = [e for e in excess if e > 1.5]
    return f"{len(slow)} slow steps, {100 * sum(slow) / sum(times):.1f}% of the time"
a, _ = steps("pair-a"); b, _ = steps("pair-b"); d, c = steps("ddp")
pair = (statistics.mean(a) + statistics.mean(b)) / 2
step, wait = statistics.mean(d), statistics.mean(c)
print(f"round {round_}: pair step {pair:.2f} ms | DDP step {step:.2f} ms = compute {step - wait:.2f} + all-reduce {wait:.2f} "
      f"({100 * wait / step:.1f}%) | DDP ÷ pair {step / pair:.3f}, DDP compute ÷ pair {(step - wait) / pair:.3f}")
# The pair's steps matched by index, each taking the slower of the two: what lock step would cost
# two processes that drift as these did, with no communication at all.
lock = statistics.mean(max(x, y) for x, y in zip(a, b))
print(f"  pair in lock step (each step the slower of the two): {lock:.2f} ms, +{100 * (lock / pair - 1):.1f}% over the pair's mean")
print(f"  bursts: pair {bursts(a)} / {bursts(b)}; DDP rank 0 compute {bursts([s - w for s, w in zip(d, c)])}")
PY
done
