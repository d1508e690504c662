"""Joins the JSON lines of `tandem bench allreduce --json`, Benchmarks/gloo/raw_allreduce.cpp and
Benchmarks/pytorch/allreduce.py and prints a Markdown table of median times per size, with
Tandem's time divided by each other's (below 1 means Tandem is faster).

    python3 Benchmarks/compare_allreduce.py tandem.jsonl raw-gloo.jsonl torch.jsonl
"""
import json
import sys


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("[rank"):
                line = line.split("]", 1)[1].strip()
            if line.startswith("{"):
                r = json.loads(line)
                if r.get("form", "inplace") == "inplace":
                    rows[r["bytes"]] = r
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
            cells.append(f"{r['median_ms']:.3f} ({r['gb_per_s']:.2f})" if r else "-")
        ratios = []
        for t in tables[1:]:
            r = t.get(size)
            ratios.append(f"{ours[size]['median_ms'] / r['median_ms']:.2f}" if r else "-")
        print(f"| {ours[size]['size']} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
