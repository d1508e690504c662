"""PyTorch reference for `tandem train --model convnet --dataset mnist`: the same model,
recipe and timing rule (train images/s counts forward + backward + optimizer step, not data
loading). Reads the repository's Data/mnist IDX files, so no download is needed.

    python Benchmarks/pytorch/mnist_convnet.py --batch-size 64 --threads 2 --epochs 1
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


class ConvNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 16, kernel_size=5, stride=1, padding=2),
                                    nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.layer2 = nn.Sequential(nn.Conv2d(16, 32, kernel_size=5, stride=1, padding=2),
                                    nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.fc = nn.Linear(7 * 7 * 32, num_classes)

    def forward(self, x):
        out = self.layer2(self.layer1(x))
        return self.fc(out.reshape(out.size(0), -1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default="Data/mnist")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    def load(prefix):
        x = torch.from_numpy(read_idx(f"{args.data_dir}/{prefix}-images-idx3-ubyte.gz").copy()).float().div(255)
        x = ((x - 0.1307) / 0.3081).unsqueeze(1)
        y = torch.from_numpy(read_idx(f"{args.data_dir}/{prefix}-labels-idx1-ubyte.gz").astype(np.int64))
        return x, y

    train_x, train_y = load("train")
    test_x, test_y = load("t10k")
    model = ConvNet()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    steps, images, train_seconds = 0, 0, 0.0
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for i in range(0, len(order), args.batch_size):
            if args.max_steps is not None and steps >= args.max_steps:
                break
            idx = order[i:i + args.batch_size]
            x, y = train_x[idx], train_y[idx]
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            train_seconds += time.perf_counter() - t0
            steps += 1
            images += len(idx)
    model.eval()
    with torch.no_grad():
        correct = sum((model(test_x[i:i + 1000]).argmax(1) == test_y[i:i + 1000]).sum().item()
                      for i in range(0, len(test_x), 1000))
    print(json.dumps({"framework": "pytorch", "model": "convnet", "batch_size": args.batch_size, "threads": args.threads,
                      "steps": steps, "test_accuracy": correct / len(test_x),
                      "train_images_per_second": round(images / train_seconds, 1),
                      "wall_seconds": round(time.perf_counter() - start, 2)}))


if __name__ == "__main__":
    main()
