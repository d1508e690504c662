"""PyTorch side of `tandem bench allreduce`: dist.all_reduce (sum, float32, in place) on the gloo
backend between 2 processes on 127.0.0.1, for 1 KB, 1 MB, 25 MB and 100 MB. Same protocol as
Tandem's: a zero tensor, 3 warm-up calls, then 50 timed calls (10 from 25 MB on); rank 0 prints
one JSON line per size with the same fields (median_ms, min_ms, gb_per_s = bytes / median).

Run with a virtualenv that has torch (outside the repository):
    torchrun --standalone --nproc-per-node 2 Benchmarks/pytorch/allreduce.py > torch.jsonl
Tandem's numbers:
    tandem bench allreduce --json > tandem.jsonl
See Benchmarks/README.md.
"""
import json
import time

import torch
import torch.distributed as dist


def label(size):
    return f"{size >> 20} MB" if size % (1 << 20) == 0 else f"{size >> 10} KB"


def main():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for size in [1024, 1 << 20, 25 << 20, 100 << 20]:
        t = torch.zeros(size // 4, dtype=torch.float32)
        reps = 10 if size >= (25 << 20) else 50
        for _ in range(3):
            dist.all_reduce(t)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        median = times[len(times) // 2]
        if rank == 0:
            print(json.dumps({"op": "allreduce", "form": "inplace", "backend": "torch-gloo", "world": dist.get_world_size(),
                              "dtype": "float32", "bytes": size, "size": label(size), "reps": reps,
                              "median_ms": round(median, 4), "min_ms": round(times[0], 4),
                              "gb_per_s": round(size / (median / 1000) / 1e9, 6)}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
