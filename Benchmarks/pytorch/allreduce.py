"""PyTorch side of `tandem dist-selftest --bench`: dist.all_reduce (sum, float32) on the gloo
backend between 2 processes on 127.0.0.1, for 1 KB, 1 MB, 25 MB and 100 MB; one JSON line per
size on rank 0, with the same warm-up (3) and repetitions (50, or 10 from 25 MB) and the median.

Run with a virtualenv that has torch (outside the repository):
    torchrun --standalone --nproc-per-node 2 Benchmarks/pytorch/allreduce.py
Tandem's numbers:
    tandem run --standalone --nproc-per-node 2 -- tandem dist-selftest --bench --count 0
"""
import json
import time

import torch
import torch.distributed as dist


def main():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for size in [1024, 1 << 20, 25 << 20, 100 << 20]:
        t = torch.ones(size // 4, dtype=torch.float32)
        reps = 10 if size >= (25 << 20) else 50
        for _ in range(3):
            dist.all_reduce(t)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        if rank == 0:
            print(json.dumps({"op": "allreduce", "backend": "torch-gloo", "world": dist.get_world_size(),
                              "bytes": size, "median_ms": times[len(times) // 2], "min_ms": times[0]}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
