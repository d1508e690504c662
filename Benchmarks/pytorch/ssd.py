"""PyTorch side of `tandem bench ops --filter ssd`: Mamba-2's chunked SSD (`ssd_minimal_discrete`
from state-spaces/mamba, the same code as the golden file ssd_mamba2), float32, chunk 64,
h 8, p 64, n 64, for (b 2, l 1024) and (b 1, l 4096): forward alone (no_grad) and forward +
backward to X, A, B, C. One JSON line per case and thread count, the median over at least
0.5 s after 2 warm-up calls (as BenchOps.swift does).

    /work/venv/bin/python Benchmarks/pytorch/ssd.py > pytorch.jsonl
    tandem bench ops --filter ssd --json > tandem.jsonl
    python3 Benchmarks/compare.py tandem.jsonl pytorch.jsonl
"""
import torch
import torch.nn.functional as F

from ops import run_cases


def segsum(x):
    T = x.size(-1)
    x = x.unsqueeze(-1).expand(*x.shape, T)
    x = x.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), -1), 0)
    x_segsum = torch.cumsum(x, dim=-2)
    return x_segsum.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), 0), -torch.inf)


def ssd_minimal_discrete(X, A, B, C, block_len, initial_states=None):
    b, l = X.shape[:2]
    X, A, B, C = [t.reshape(b, l // block_len, block_len, *t.shape[2:]) for t in (X, A, B, C)]
    A = A.permute(0, 3, 1, 2)
    A_cumsum = torch.cumsum(A, dim=-1)
    L = torch.exp(segsum(A))
    Y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, L, X)
    decay_states = torch.exp(A_cumsum[:, :, :, -1:] - A_cumsum)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, X)
    if initial_states is None:
        initial_states = torch.zeros_like(states[:, :1])
    states = torch.cat([initial_states, states], dim=1)
    decay_chunk = torch.exp(segsum(F.pad(A_cumsum[:, :, :, -1], (1, 0))))
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final_state = new_states[:, :-1], new_states[:, -1]
    Y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, torch.exp(A_cumsum))
    return (Y_diag + Y_off).reshape(b, l, *Y_diag.shape[3:]), final_state


def cases():
    g = torch.Generator().manual_seed(1)
    h, p, n, q = 8, 64, 64, 64
    out = []
    for b, l in [(2, 1024), (1, 4096)]:
        X = torch.randn(b, l, h, p, generator=g)
        A = torch.empty(b, l, h).uniform_(-0.1, -0.001, generator=g)
        B = torch.randn(b, l, h, n, generator=g)
        C = torch.randn(b, l, h, n, generator=g)
        up = torch.randn(b, l, h, p, generator=g)
        name = f"ssd_b{b}_l{l}_h{h}_p{p}_n{n}"

        def fwd(X=X, A=A, B=B, C=C):
            with torch.no_grad():
                ssd_minimal_discrete(X, A, B, C, q)

        def fwd_bwd(X=X, A=A, B=B, C=C, up=up):
            xs = [t.detach().requires_grad_() for t in (X, A, B, C)]
            y, _ = ssd_minimal_discrete(*xs, q)
            y.backward(up)

        out += [(name + "_fwd", fwd), (name + "_fwd_bwd", fwd_bwd)]
    return out


if __name__ == "__main__":
    run_cases(cases)
