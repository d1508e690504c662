"""Joins the JSON lines of `tandem bench allreduce --json`, Benchmarks/gloo/raw_allreduce.cpp and
Benchmarks/pytorch/allreduce.py and prints a Markdown table of median times per size, with
Tandem's time divided by each other's (below 1 means Tandem is faster). A file may hold several
rounds (Benchmarks/allreduce_rounds.sh appends one per run); the table then shows the median of
the rounds' medians and, in brackets, how many rounds there were.

    python3 Benchmarks/compare_allreduce.py tandem.jsonl raw-gloo.jsonl torch.jsonl
"""
import json
import statistics
import sys


def load(path):
    rounds = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("[rank"):
                line = line.split("]", 1)[1].strip()
            if line.startswith("{"):
                r = json.loads(line)
                if r.get("form", "inplace") == "inplace":
                    rounds.setdefault(r["bytes"], []).append(r)
    rows = {}
    for size, rs in rounds.items():
        median = statistics.median(r["median_ms"] for r in rs)
        rows[size] = dict(rs[0], median_ms=median, gb_per_s=size / (median / 1000) / 1e9, rounds=len(rs))
    return rows


def main():
    tables = [load(p) for p in sys.argv[1:]]
    names = [next(iter(t.values()))["backend"] if t else p for t, p in zip(tables, sys.argv[1:])]
    ours = tables[0]
    header = "| size | " + " | ".join(f"{n} ms (GB/s)" for n in names)
    header += "".join(f" | {names[0]} / {n}" for n in names[1:]) + " |"
    print(header)
    print("|---" * (1 + len(names) + len(names) - 1) + "|")
    for size in sorted(ours):
        cells = []
        for t in tables:
            r = t.get(size)
            rounds = f" [{r['rounds']}]" if r and r["rounds"] > 1 else ""
            cells.append(f"{r['median_ms']:.3f} ({r['gb_per_s']:.2f}){rounds}" if r else "-")
        ratios = []
        for t in tables[1:]:
            r = t.get(size)
            ratios.append(f"{ours[size]['median_ms'] / r['median_ms']:.2f}" if r else "-")
        print(f"| {ours[size]['size']} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
