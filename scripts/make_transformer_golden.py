"""Golden values for Tandem's Transformer ops, computed with PyTorch (issue 20).

Writes Tests/Fixtures/golden/transformer_ops.safetensors: for each case the inputs, an upstream
gradient, the output and every input gradient (float64 unless the case says float32). Run from the
repository root with a Python that has torch and safetensors (not needed by the tests):

    /path/to/venv/bin/python scripts/make_transformer_golden.py
"""
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(2000)
out = {}
meta = {}


def attention_case(name, b, hq, hkv, lq, lk, d, dv, causal=False, mask=None, dtype=torch.float64, scale=None):
    g = torch.Generator().manual_seed(2000 + zlib.crc32(name.encode()) % 1000)
    q = torch.randn(b, hq, lq, d, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(b, hkv, lk, d, generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(b, hkv, lk, dv, generator=g, dtype=dtype, requires_grad=True)
    m = None
    if mask == "bool":
        m = torch.rand(b, 1, lq, lk, generator=g) > 0.3
        m[..., 0] = True  # every row keeps a key
    elif mask == "float":
        m = torch.randn(lq, lk, generator=g, dtype=dtype)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal, scale=scale, enable_gqa=hq != hkv)
    up = torch.randn(y.shape, generator=g, dtype=dtype)
    y.backward(up)
    p = f"attention.{name}."
    for key, t in [("q", q), ("k", k), ("v", v), ("upstream", up), ("out", y)]:
        out[p + key] = t.detach().contiguous()
    for key, t in [("q", q), ("k", k), ("v", v)]:
        out[p + "grad_" + key] = t.grad.contiguous()
    if m is not None:
        out[p + "mask"] = m.to(torch.float64) if m.dtype == torch.bool else m.contiguous()
    meta[p + "config"] = f"causal={causal} mask={mask} dtype={dtype} scale={scale}"


attention_case("plain", 2, 4, 4, 9, 13, 8, 8)
attention_case("causal_odd", 2, 3, 3, 37, 37, 16, 16, causal=True)
attention_case("gqa", 1, 6, 2, 20, 33, 8, 12)
attention_case("mqa_causal", 2, 4, 1, 25, 25, 8, 8, causal=True)
attention_case("bool_mask", 2, 2, 2, 11, 17, 8, 8, mask="bool")
attention_case("float_mask", 1, 2, 2, 12, 12, 4, 4, mask="float", scale=0.3)
attention_case("long_causal", 1, 2, 2, 300, 300, 16, 16, causal=True, dtype=torch.float32)
attention_case("float32_causal", 1, 2, 2, 70, 70, 16, 16, causal=True, dtype=torch.float32)

meta["generator"] = f"scripts/make_transformer_golden.py, torch {torch.__version__}"
save_file(out, "Tests/Fixtures/golden/transformer_ops.safetensors", metadata=meta)
print(f"{len(out)} tensors")
