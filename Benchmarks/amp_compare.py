"""Runs `tandem bench amp` and Benchmarks/pytorch/amp.py alternately and prints, per case,
the best (lowest) time of each framework and precision: on shared machines the best of a
few alternating rounds is steadier than one run.

    python3 Benchmarks/amp_compare.py --tandem .build/release/tandem --python /work/venv/bin/python --rounds 3
"""
import argparse
import json
import os
import subprocess

p = argparse.ArgumentParser()
p.add_argument("--tandem", default=".build/release/tandem")
p.add_argument("--python", default="python3")
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--seconds", default="2")
p.add_argument("--amp", default="fp32,bf16")
args = p.parse_args()
here = os.path.dirname(os.path.abspath(__file__))
# PyTorch's libgomp gets the OpenMP settings `tandem` sets for itself (short active spin).
env = dict(os.environ, OMP_WAIT_POLICY="ACTIVE", GOMP_SPINCOUNT="10000")
best = {}
for _ in range(args.rounds):
    for cmd in ([args.tandem, "bench", "amp", "--seconds", args.seconds, "--amp", args.amp],
                [args.python, os.path.join(here, "pytorch", "amp.py"), "--seconds", args.seconds, "--amp", args.amp]):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            r = json.loads(line)
            key = (r["case"], r["amp"], r["framework"])
            if key not in best or r["ms"] < best[key]["ms"]:
                best[key] = r
print(f"{'case':28} {'amp':5} {'tandem ms':>10} {'img/s':>9} {'pytorch ms':>11} {'img/s':>9}")
for case in sorted({k[0] for k in best}):
    for amp in args.amp.split(","):
        t, q = best.get((case, amp, "tandem")), best.get((case, amp, "pytorch"))
        print(f"{case:28} {amp:5} {t['ms']:10.2f} {t['images_per_second']:9.0f} {q['ms']:11.2f} {q['images_per_second']:9.0f}")
