"""PyTorch side of `tandem bench amp`: training steps in float32 and under CPU autocast
(bfloat16, float16 with a GradScaler), one JSON line per case; with --mnist, also trains
the MNIST ConvNet for one epoch in float32 and in bfloat16 and reports test accuracy.

    /work/venv/bin/python Benchmarks/pytorch/amp.py --threads 2
    /work/venv/bin/python Benchmarks/pytorch/amp.py --mnist --data-dir Data/mnist
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from mnist_convnet import ConvNet  # noqa: E402
from mnist_train import load_mnist  # noqa: E402
from ops import timed  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


def bench(args):
    g = torch.Generator().manual_seed(0)
    for precision in args.amp.split(","):
        dtype = DTYPES[precision]
        ctx = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype else (lambda: torch.autocast("cpu", enabled=False))
        a, w = torch.randn(256, 1024, generator=g), torch.randn(1024, 1024, generator=g)

        def gemm():
            with ctx():
                torch.matmul(a, w)
        cases = [("gemm_256x1024x1024", 256, gemm)]
        for name, batch, model in [("convnet_train_step_b64", 64, ConvNet()), ("mlp4x1024_train_step_b256", 256, mlp())]:
            x = torch.randn(batch, 1, 28, 28, generator=g)
            y = torch.arange(batch) % 10
            opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
            scaler = torch.amp.GradScaler("cpu", enabled=dtype == torch.float16)

            def step(model=model, x=x, y=y, opt=opt, scaler=scaler):
                opt.zero_grad()
                with ctx():
                    loss = F.cross_entropy(model(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            cases.append((name, batch, step))
        for name, batch, body in cases:
            ms = timed(body, args.seconds)
            print(json.dumps({"framework": "pytorch", "case": name, "amp": precision, "threads": args.threads,
                              "ms": round(ms, 3), "images_per_second": round(batch / ms * 1000, 1)}), flush=True)


def mnist(args):
    train_x, train_y = load_mnist(args.data_dir, "train")
    test_x, test_y = load_mnist(args.data_dir, "t10k")
    for precision in ("fp32", "bf16"):
        dtype = DTYPES[precision]
        torch.manual_seed(args.seed)
        model = ConvNet()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        images, seconds = 0, 0.0
        order = torch.randperm(len(train_x))
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            t0 = time.perf_counter()
            opt.zero_grad()
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            loss.backward()
            opt.step()
            seconds += time.perf_counter() - t0
            images += len(idx)
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            correct = sum((model(test_x[i:i + 1000]).argmax(1) == test_y[i:i + 1000]).sum().item()
                          for i in range(0, len(test_x), 1000))
        print(json.dumps({"framework": "pytorch", "model": "convnet", "amp": precision, "epochs": 1,
                          "test_accuracy": correct / len(test_x),
                          "train_images_per_second": round(images / seconds, 1)}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--amp", default="fp32,bf16,fp16")
    p.add_argument("--mnist", action="store_true")
    p.add_argument("--data-dir", default="Data/mnist")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.mnist:
        mnist(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
