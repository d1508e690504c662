"""PyTorch side of the CTC cases of `tandem bench ops` (`--filter ctc`): CTC loss forward +
backward (mean reduction) on float32 log-probabilities, one JSON line per case.

Run with a virtualenv that has torch (outside the repository), e.g.
    python Benchmarks/pytorch/ctc.py --threads 1,2 > /tmp/torch_ctc.jsonl
    tandem bench ops --filter ctc --json > /tmp/tandem_ctc.jsonl
    python3 Benchmarks/compare.py /tmp/tandem_ctc.jsonl /tmp/torch_ctc.jsonl
"""
import torch
import torch.nn.functional as F

from ops import run_cases

# (T, N, C, S): keep in step with BenchCases.ctcCases in Sources/tandem/BenchOps.swift.
SHAPES = ((200, 16, 30, 40), (1000, 4, 60, 200))


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


if __name__ == "__main__":
    run_cases(cases)
