"""The training loop the PyTorch references of `tandem train --dataset mnist` share (mnist_convnet.py,
kan.py, mambaout.py): the recipe of Sources/tandem/TrainCommand.swift (SGD lr 0.01, momentum 0.9,
batch 64, cross-entropy, 1 epoch), the timing rule of Sources/TandemTrain/Trainer.swift (train
images/s counts zero_grad + forward + backward + optimizer step + reading the loss, not data
loading), evaluation in batches of 1000, and one final JSON line like mnist_convnet.py.

`--check-weights PATH` only evaluates a safetensors state dict (e.g. a Tandem checkpoint's
model.safetensors), loaded with strict=True, so its accuracy can be compared with
`tandem eval --weights PATH`. `--save PATH` writes the trained state dict as safetensors,
which `tandem eval` reads.
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


def load_mnist(data_dir, prefix):
    """Images [N, 1, 28, 28] normalised by mean 0.1307, std 0.3081 (as Tandem's MNIST) and int64 labels."""
    x = torch.from_numpy(read_idx(f"{data_dir}/{prefix}-images-idx3-ubyte.gz").copy()).float().div(255)
    x = ((x - 0.1307) / 0.3081).unsqueeze(1)
    y = torch.from_numpy(read_idx(f"{data_dir}/{prefix}-labels-idx1-ubyte.gz").astype(np.int64))
    return x, y


def accuracy(model, test_x, test_y):
    model.eval()
    with torch.no_grad():
        correct = sum((model(test_x[i:i + 1000]).argmax(1) == test_y[i:i + 1000]).sum().item()
                      for i in range(0, len(test_x), 1000))
    return correct / len(test_x)


def add_training_options(p, threads):
    """The options every MNIST training script takes (the same as `tandem train`'s)."""
    p.add_argument("--data-dir", default="Data/mnist")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--seed", type=int, default=0)


def main(name, make_model, description):
    """Parses the common options, then trains `make_model()` (or only evaluates --check-weights)."""
    p = argparse.ArgumentParser(description=description)
    add_training_options(p, threads=2)
    p.add_argument("--check-weights", metavar="PATH", help="only evaluate this safetensors state dict (strict names and shapes)")
    p.add_argument("--save", metavar="PATH", help="write the trained state dict as safetensors")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    test_x, test_y = load_mnist(args.data_dir, "t10k")
    model = make_model()

    if args.check_weights:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(args.check_weights), strict=True)
        print(json.dumps({"framework": "pytorch", "model": name, "weights": args.check_weights,
                          "images": len(test_x), "test_accuracy": accuracy(model, test_x, test_y)}))
        return

    train_x, train_y = load_mnist(args.data_dir, "train")
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
            loss.item()
            train_seconds += time.perf_counter() - t0
            steps += 1
            images += len(idx)
    test_accuracy = accuracy(model, test_x, test_y)
    if args.save:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.save)
    print(json.dumps({"framework": "pytorch", "model": name, "batch_size": args.batch_size, "threads": args.threads,
                      "steps": steps, "test_accuracy": test_accuracy,
                      "train_images_per_second": round(images / train_seconds, 1),
                      "wall_seconds": round(time.perf_counter() - start, 2)}))
