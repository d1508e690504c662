"""PyTorch side of the CTC cases of `tandem bench ops` (`--filter ctc`): CTC loss forward +
backward (mean reduction) on float32 log-probabilities, one JSON line per case.

Run with a virtualenv that has torch (outside the repository), e.g.
    python Benchmarks/pytorch/ctc.py --threads 1,2 > /tmp/torch_ctc.jsonl
    tandem bench ops --filter ctc --json > /tmp/tandem_ctc.jsonl
    python3 Benchmarks/compare.py /tmp/tandem_ctc.jsonl /tmp/torch_ctc.jsonl
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

# (T, N, C, S): keep in step with BenchCases.ctcCases in Sources/tandem/BenchOps.swift.
SHAPES = ((200, 16, 30, 40), (1000, 4, 60, 200))


def timed(body, seconds):
    body(); body()
    samples = []
    start = time.perf_counter()
    while len(samples) < 5 or (time.perf_counter() - start < seconds and len(samples) < 1000):
        t0 = time.perf_counter()
        body()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def cases():
    g = torch.Generator().manual_seed(0)
    out = []
    for t, n, c, s in SHAPES:
        log_probs = torch.randn(t, n, c, generator=g).log_softmax(2)
        # The same labels as the Swift side: 1 + (n*131 + s*17) % (C-1).
        targets = torch.tensor([[1 + (b * 131 + j * 17) % (c - 1) for j in range(s)] for b in range(n)], dtype=torch.long)
        input_lengths = torch.full((n,), t, dtype=torch.long)
        target_lengths = torch.full((n,), s, dtype=torch.long)

        def body(log_probs=log_probs, targets=targets, input_lengths=input_lengths, target_lengths=target_lengths):
            x = log_probs.detach().requires_grad_()
            F.ctc_loss(x, targets, input_lengths, target_lengths, blank=0, reduction="mean").backward()

        out.append((f"ctc_T{t}_N{n}_C{c}_S{s}_fwd_bwd", body))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--filter", default=None)
    args = parser.parse_args()
    all_cases = cases()
    for n in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(n)
        for name, body in all_cases:
            if args.filter and args.filter not in name:
                continue
            ms = timed(body, args.seconds)
            print(json.dumps({"case": name, "threads": n, "ms": round(ms, 4), "framework": "pytorch"}), flush=True)


if __name__ == "__main__":
    main()
