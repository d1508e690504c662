"""PyTorch side of `tandem bench ops`: the same cases, one JSON line per case.

Run with a virtualenv that has torch (outside the repository), e.g.
    python Benchmarks/pytorch/ops.py --threads 1,2 > /tmp/torch_ops.jsonl
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


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
    for n in (512, 1024):
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        out.append((f"sgemm_{n}", lambda a=a, b=b: a @ b))
    for name, (cin, cout, hw) in (("conv_mnist1_fwd_bwd", (1, 16, 28)), ("conv_mnist2_fwd_bwd", (16, 32, 14))):
        x = torch.randn(64, cin, hw, hw, generator=g)
        w = torch.randn(cout, cin, 5, 5, generator=g).requires_grad_()
        b = torch.randn(cout, generator=g).requires_grad_()
        xin = x.requires_grad_(cin > 1)  # the first layer's input needs no gradient
        up = torch.randn(64, cout, hw, hw, generator=g)
        def body(xin=xin, w=w, b=b, up=up):
            F.conv2d(xin, w, b, padding=2).backward(up)
        out.append((name, body))
    ga, gb = torch.randn(256, 1024, generator=g), torch.randn(1024, 1024, generator=g)
    out.append(("gemm_256x1024x1024", lambda: ga @ gb))
    blocks = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 5, padding=2), torch.nn.BatchNorm2d(16), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 5, padding=2), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2)).train()
    xb, upb = torch.randn(64, 1, 28, 28, generator=g), torch.randn(64, 32, 7, 7, generator=g)
    out.append(("convblocks_mnist_train_fwd_bwd", lambda: blocks(xb).backward(upb)))
    xp = torch.randn(64, 16, 28, 28, generator=g).requires_grad_()
    upp = torch.randn(64, 16, 14, 14, generator=g)
    out.append(("maxpool_64x16x28x28_fwd_bwd", lambda: F.max_pool2d(xp, 2, 2).backward(upp)))
    for name, shape in (("bn_stats_64x16x28x28", (64, 16, 28, 28)), ("bn_stats_64x32x14x14", (64, 32, 14, 14))):
        x = torch.randn(*shape, generator=g)
        out.append((name, lambda x=x: torch.var_mean(x, dim=(0, 2, 3), unbiased=False)))
    logits = torch.randn(256, 1000, generator=g)
    up = torch.randn(256, 1000, generator=g)
    def lsm():
        x = logits.clone().requires_grad_()
        F.log_softmax(x, dim=1).backward(up)
    out.append(("log_softmax_256x1000_fwd", lambda: F.log_softmax(logits, dim=1)))
    out.append(("log_softmax_256x1000_fwd_bwd", lsm))
    for l in (256, 1024, 4096):  # gradients accumulate into q, k, v, as in the other cases
        q, k, v = (torch.randn(1, 8, l, 64, generator=g).requires_grad_() for _ in range(3))
        upa = torch.randn(1, 8, l, 64, generator=g)
        def attn(q=q, k=k, v=v, upa=upa):
            F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(upa)
        out.append((f"attention_causal_b1_h8_l{l}_d64_fwd_bwd", attn))
    a, b = torch.randn(1 << 24, generator=g), torch.randn(1 << 24, generator=g)
    out.append(("add_16M", lambda: a + b))
    out.append(("mul_16M", lambda: a * b))
    out.append(("relu_16M", lambda: torch.relu(a)))
    out.append(("exp_16M", lambda: torch.exp(a)))
    return out


def run_cases(make_cases):
    """Times every (name, body) of make_cases() for each --threads count, one JSON line each."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--filter", default=None)
    args = parser.parse_args()
    all_cases = make_cases()
    for n in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(n)
        for name, body in all_cases:
            if args.filter and args.filter not in name:
                continue
            ms = timed(body, args.seconds)
            print(json.dumps({"case": name, "threads": n, "ms": round(ms, 4), "framework": "pytorch"}), flush=True)


if __name__ == "__main__":
    run_cases(cases)
