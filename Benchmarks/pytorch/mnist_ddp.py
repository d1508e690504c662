"""PyTorch DDP (gloo) reference for `tandem train --model convnet --dataset mnist --nproc-per-node N`:
one epoch (or --max-steps) of the seed's ConvNet with a DistributedSampler, 1 thread per
process, parallel evaluation. Prints one JSON object from rank 0.

    python Benchmarks/pytorch/mnist_ddp.py --nproc 2 --batch-size 64
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from mnist_convnet import ConvNet
from mnist_train import add_training_options, load_mnist


def worker(rank, args):
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    dist.init_process_group("gloo", rank=rank, world_size=args.nproc)
    torch.manual_seed(args.seed)

    def load(prefix):
        return TensorDataset(*load_mnist(args.data_dir, prefix))

    train, test = load("train"), load("t10k")
    sampler = DistributedSampler(train, num_replicas=args.nproc, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)
    model = DDP(ConvNet())
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    steps, images, train_seconds = 0, 0, 0.0
    start = time.perf_counter()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        for x, y in loader:
            if args.max_steps is not None and steps >= args.max_steps:
                break
            t0 = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            train_seconds += time.perf_counter() - t0
            steps += 1
            images += len(y)
    train_wall = time.perf_counter() - start
    model.eval()
    # Exact shards for evaluation (PyTorch's sampler would pad and double-count).
    idx = list(range(rank, len(test), args.nproc))
    with torch.no_grad():
        xs, ys = test.tensors[0][idx], test.tensors[1][idx]
        correct = sum((model(xs[i:i + 1000]).argmax(1) == ys[i:i + 1000]).sum().item() for i in range(0, len(idx), 1000))
    counts = torch.tensor([correct, len(idx), images / train_seconds], dtype=torch.float64)
    dist.all_reduce(counts)
    if rank == 0:
        print(json.dumps({"framework": "pytorch-ddp-gloo", "world_size": args.nproc, "batch_size": args.batch_size,
                          "steps": steps, "test_accuracy": counts[0].item() / counts[1].item(),
                          "train_images_per_second": round(counts[2].item(), 1),
                          "train_wall_seconds": round(train_wall, 2),
                          "wall_seconds": round(time.perf_counter() - start, 2)}), flush=True)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nproc", type=int, default=2)
    add_training_options(p, threads=1)
    p.add_argument("--port", type=int, default=29533)
    args = p.parse_args()
    mp.spawn(worker, args=(args,), nprocs=args.nproc)


if __name__ == "__main__":
    main()
