"""Joins `tandem bench ... --json` output with the PyTorch script's output and prints a
Markdown table of times and ratios (Tandem / PyTorch; below 1 means Tandem is faster).

    python3 Benchmarks/compare.py tandem.jsonl pytorch.jsonl
"""
import json
import sys


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows[(r["case"], r["threads"])] = r["ms"]
    return rows


def main():
    ours, theirs = load(sys.argv[1]), load(sys.argv[2])
    print("| case | threads | Tandem ms | PyTorch ms | ratio |")
    print("|---|---|---|---|---|")
    for key in sorted(ours, key=lambda k: (k[1], k[0])):
        if key in theirs:
            print(f"| {key[0]} | {key[1]} | {ours[key]:.3f} | {theirs[key]:.3f} | {ours[key] / theirs[key]:.2f} |")


if __name__ == "__main__":
    main()
