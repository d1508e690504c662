"""Golden values for Tandem's Transformer ops, computed with PyTorch (issue 20).

Writes Tests/Fixtures/golden/transformer_ops.safetensors: for each case the inputs, an upstream
gradient, the output and every input gradient (float64 unless the case says float32). Parameters of a
case are stored as "<case>.param.<Hugging Face name>" and their gradients as "<case>.grad.<name>";
each case has a "<case>.config" string in the file's metadata. Run from the repository root with a
Python that has torch, safetensors and transformers (none needed by the tests):

    /path/to/venv/bin/python scripts/make_transformer_golden.py

Made with torch 2.15.0 and transformers 5.25.0 (both versions are in the "generator" metadata).

Cases:
  attention.<name>.  F.scaled_dot_product_attention (plain, causal, GQA/MQA, bool/float masks).
  rope.basic.        LLaMA rotary embedding (rotate_half convention, theta 10000), x [2, 3, 7, 16],
                     positions 0..6 ("positions" as float64). cos/sin are computed in float64 here;
                     transformers computes them in float32 (checked to agree to ~1e-6).
  rope.offset.       Same with positions 5..9, x [2, 2, 5, 8], theta 500000.
  rmsnorm.           LlamaRMSNorm formula x * rsqrt(mean(x^2, -1) + 1e-6) * weight, fully in float64
                     (transformers' LlamaRMSNorm would round through float32).
  swiglu.            transformers LlamaMLP, hidden 16, intermediate 24, no bias; nn.Linear weights
                     [out, in].
  gpt2_block.        one transformers GPT2Block (n_embd 32, 4 heads, n_inner 128, gelu_new,
                     eps 1e-5), causal, "sdpa" attention; Conv1D weights stored as HF has them,
                     [in, out]. LayerNorm weights/biases and all biases are random.
  llama_block.       one transformers LlamaDecoderLayer (hidden 32, intermediate 48, 4 heads, 2 KV
                     heads, eps 1e-6, theta 10000), causal, "sdpa" attention, positions 0..8, cos/sin
                     and RMSNorm in float64 (see above); norm weights random.
The two blocks are also checked against plain-torch re-implementations in this script.
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


# ---------------------------------------------------------------------------------------------
# LLaMA-style pieces and whole blocks (issue 21). Imported here so the attention cases above do not
# depend on transformers; each case draws from its own generator, so adding cases never changes others.
import math
import types

import transformers
from transformers import GPT2Config, LlamaConfig
from transformers.masking_utils import create_causal_mask
from transformers.models.gpt2.modeling_gpt2 import GPT2Block
from transformers.models.llama.modeling_llama import (
    LlamaDecoderLayer,
    LlamaMLP,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
    rotate_half,
)


def case_generator(prefix):
    return torch.Generator().manual_seed(3000 + zlib.crc32(prefix.encode()) % 1000)


def rope_cos_sin(positions, head_dim, theta, dtype=torch.float64):
    """cos/sin as transformers' LlamaRotaryEmbedding builds them, but in `dtype` throughout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=dtype) / head_dim))
    freqs = torch.outer(positions.to(dtype), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def store_module_case(prefix, module, x, y, up, extra_meta):
    out[prefix + "x"] = x.detach().contiguous()
    out[prefix + "upstream"] = up.contiguous()
    out[prefix + "out"] = y.detach().contiguous()
    out[prefix + "grad_x"] = x.grad.contiguous()
    for name, param in module.named_parameters():
        out[prefix + "param." + name] = param.detach().contiguous()
        out[prefix + "grad." + name] = param.grad.contiguous()
    meta[prefix + "config"] = extra_meta


def randomize(module, g, weight_std, norm_names=()):
    """Every parameter random: weights N(0, weight_std^2), biases N(0, 0.1^2), norm weights 1 + N(0, 0.1^2)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=g, dtype=param.dtype)
            if name.endswith("bias"):
                param.copy_(0.1 * noise)
            elif any(name.startswith(n) for n in norm_names):
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(weight_std * noise)


def rope_case(name, b, h, positions, d, theta):
    p = f"rope.{name}."
    g = case_generator(p)
    x = torch.randn(b, h, len(positions), d, generator=g, dtype=torch.float64, requires_grad=True)
    cos, sin = rope_cos_sin(positions, d, theta)
    y = x * cos + rotate_half(x) * sin
    # Same as transformers' apply_rotary_pos_emb (cos/sin [batch, length, d], unsqueezed over heads).
    hf_y, _ = apply_rotary_pos_emb(x, x, cos[None].expand(b, -1, -1), sin[None].expand(b, -1, -1))
    assert torch.equal(hf_y, y)
    # And transformers' own (float32) LlamaRotaryEmbedding agrees to float32 accuracy.
    rot = LlamaRotaryEmbedding(LlamaConfig(hidden_size=h * d, num_attention_heads=h, rope_theta=theta))
    hf_cos, hf_sin = rot(x, positions[None].long())
    assert torch.allclose(hf_cos[0], cos, atol=1e-5) and torch.allclose(hf_sin[0], sin, atol=1e-5)
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(up)
    for key, t in [("x", x), ("upstream", up), ("out", y)]:
        out[p + key] = t.detach().contiguous()
    out[p + "grad_x"] = x.grad.contiguous()
    out[p + "positions"] = positions.to(torch.float64)
    meta[p + "config"] = (f"HF LLaMA rotate_half RoPE, theta={theta}, head_dim={d}, positions "
                          f"{int(positions[0])}..{int(positions[-1])}, cos/sin in float64, x [b, heads, length, head_dim]")


rope_case("basic", 2, 3, torch.arange(0, 7), 16, 10000.0)
rope_case("offset", 2, 2, torch.arange(5, 10), 8, 500000.0)


def rmsnorm_f64(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rmsnorm_case():
    p = "rmsnorm."
    g = case_generator(p)
    x = torch.randn(3, 5, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = (1.0 + 0.2 * torch.randn(16, generator=g, dtype=torch.float64)).requires_grad_()
    y = rmsnorm_f64(x, w, 1e-6)
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(up)
    for key, t in [("x", x), ("weight", w), ("upstream", up), ("out", y)]:
        out[p + key] = t.detach().contiguous()
    out[p + "grad_x"] = x.grad.contiguous()
    out[p + "grad_weight"] = w.grad.contiguous()
    meta[p + "config"] = "LlamaRMSNorm: x * rsqrt(mean(x^2, -1) + eps) * weight, eps=1e-6, all float64"


rmsnorm_case()


def swiglu_case():
    p = "swiglu."
    g = case_generator(p)
    mlp = LlamaMLP(LlamaConfig(hidden_size=16, intermediate_size=24, num_attention_heads=2, mlp_bias=False,
                               hidden_act="silu")).double()
    randomize(mlp, g, 0.3)
    x = torch.randn(2, 5, 16, generator=g, dtype=torch.float64, requires_grad=True)
    y = mlp(x)
    ref = F.linear(F.silu(F.linear(x, mlp.gate_proj.weight)) * F.linear(x, mlp.up_proj.weight), mlp.down_proj.weight)
    assert torch.allclose(y, ref, rtol=0, atol=1e-12)
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(up)
    store_module_case(p, mlp, x, y, up, "transformers LlamaMLP: down_proj(silu(gate_proj(x)) * up_proj(x)), "
                      "hidden 16, intermediate 24, no bias, nn.Linear weights [out, in]")


swiglu_case()


def causal_mask_for(config, x):
    # What GPT2Model / LlamaModel pass to their layers; materialized (allow_is_causal_skip=False) so the
    # layer cannot silently fall back to full attention. For "sdpa" it is a bool [b, 1, L, L] tril.
    m = create_causal_mask(config=config, inputs_embeds=x, attention_mask=None, cache=None,
                           allow_is_causal_skip=False)
    L = x.shape[1]
    assert m.dtype == torch.bool and torch.equal(m[0, 0], torch.ones(L, L, dtype=torch.bool).tril())
    return m


def plain_causal_attention(q, k, v):
    # q [b, h, L, d]; k, v [b, hkv, L, d]; explicit float64 softmax with a -inf upper triangle.
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    L = q.shape[2]
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    return s.softmax(-1) @ v


def gpt2_block_case():
    p = "gpt2_block."
    g = case_generator(p)
    config = GPT2Config(n_embd=32, n_head=4, n_inner=None, activation_function="gelu_new", resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5)
    config._attn_implementation = "sdpa"
    block = GPT2Block(config, layer_idx=0).double().eval()
    assert not list(block.named_buffers()), "expected no buffers in a transformers 5 GPT2Block"
    randomize(block, g, 0.2, norm_names=("ln_1.weight", "ln_2.weight"))
    x = torch.randn(2, 9, 32, generator=g, dtype=torch.float64, requires_grad=True)
    mask = causal_mask_for(config, x)
    y = block(x, attention_mask=mask)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape

    # Plain-torch re-implementation (Conv1D: x @ W + b with W [in, out]).
    with torch.no_grad():
        P = dict(block.named_parameters())

        def ln(t, n):
            return F.layer_norm(t, (32,), P[n + ".weight"], P[n + ".bias"], 1e-5)

        h = ln(x, "ln_1")
        qkv = h @ P["attn.c_attn.weight"] + P["attn.c_attn.bias"]
        q, k, v = (t.reshape(2, 9, 4, 8).transpose(1, 2) for t in qkv.split(32, dim=-1))
        a = plain_causal_attention(q, k, v).transpose(1, 2).reshape(2, 9, 32)
        r = x + a @ P["attn.c_proj.weight"] + P["attn.c_proj.bias"]
        m = ln(r, "ln_2") @ P["mlp.c_fc.weight"] + P["mlp.c_fc.bias"]
        m = 0.5 * m * (1 + torch.tanh(math.sqrt(2 / math.pi) * (m + 0.044715 * m ** 3)))
        ref = r + m @ P["mlp.c_proj.weight"] + P["mlp.c_proj.bias"]
        assert torch.allclose(y, ref, rtol=0, atol=1e-12), (y - ref).abs().max()
        # The mask matters: full attention gives something else.
        assert not torch.allclose(y, block(x, attention_mask=torch.ones_like(mask)))
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(up)
    store_module_case(p, block, x, y, up,
                      "transformers GPT2Block, n_embd=32 n_head=4 n_inner=128 gelu_new eps=1e-5, no dropout, "
                      "causal self-attention, attn_implementation=sdpa, float64; Conv1D weights [in, out] "
                      "(y = x @ W + b), c_attn output columns = [q | k | v]")


gpt2_block_case()


def rmsnorm_forward_f64(self, hidden_states):
    # LlamaRMSNorm.forward without the round trip through float32.
    return rmsnorm_f64(hidden_states, self.weight, self.variance_epsilon)


def llama_block_case():
    p = "llama_block."
    g = case_generator(p)
    config = LlamaConfig(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                         rms_norm_eps=1e-6, rope_theta=10000.0, attention_bias=False, mlp_bias=False,
                         hidden_act="silu")
    config._attn_implementation = "sdpa"
    layer = LlamaDecoderLayer(config, layer_idx=0).double().eval()
    for norm in (layer.input_layernorm, layer.post_attention_layernorm):
        norm.forward = types.MethodType(rmsnorm_forward_f64, norm)
    randomize(layer, g, 0.2, norm_names=("input_layernorm.", "post_attention_layernorm."))
    B, L = 2, 9
    x = torch.randn(B, L, 32, generator=g, dtype=torch.float64, requires_grad=True)
    positions = torch.arange(L)
    cos, sin = rope_cos_sin(positions, 8, 10000.0)
    hf_cos, hf_sin = LlamaRotaryEmbedding(config)(x, positions[None])
    assert torch.allclose(hf_cos[0], cos, atol=1e-5) and torch.allclose(hf_sin[0], sin, atol=1e-5)
    cos, sin = cos[None].expand(B, -1, -1), sin[None].expand(B, -1, -1)
    mask = causal_mask_for(config, x)
    y = layer(x, attention_mask=mask, position_ids=positions[None].expand(B, -1), position_embeddings=(cos, sin))
    assert isinstance(y, torch.Tensor) and y.shape == x.shape

    with torch.no_grad():
        P = dict(layer.named_parameters())

        def rope(t):  # t [b, h, L, 8]
            return t * cos[:, None] + torch.cat((-t[..., 4:], t[..., :4]), -1) * sin[:, None]

        h = rmsnorm_f64(x, P["input_layernorm.weight"], 1e-6)
        q = (h @ P["self_attn.q_proj.weight"].T).reshape(B, L, 4, 8).transpose(1, 2)
        k = (h @ P["self_attn.k_proj.weight"].T).reshape(B, L, 2, 8).transpose(1, 2)
        v = (h @ P["self_attn.v_proj.weight"].T).reshape(B, L, 2, 8).transpose(1, 2)
        a = plain_causal_attention(rope(q), rope(k), v).transpose(1, 2).reshape(B, L, 32)
        r = x + a @ P["self_attn.o_proj.weight"].T
        h = rmsnorm_f64(r, P["post_attention_layernorm.weight"], 1e-6)
        m = F.silu(h @ P["mlp.gate_proj.weight"].T) * (h @ P["mlp.up_proj.weight"].T)
        ref = r + m @ P["mlp.down_proj.weight"].T
        assert torch.allclose(y, ref, rtol=0, atol=1e-12), (y - ref).abs().max()
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(up)
    store_module_case(p, layer, x, y, up,
                      "transformers LlamaDecoderLayer, hidden=32 intermediate=48 heads=4 kv_heads=2 head_dim=8 "
                      "eps=1e-6 rope_theta=10000, no biases, silu; causal self-attention, attn_implementation=sdpa, "
                      "positions 0..8, float64 with cos/sin and RMSNorm computed in float64; nn.Linear weights [out, in], "
                      "HF q/k head layout (rotate_half pairs dims i and i+4 within a head)")


llama_block_case()


def mha_case(name, batch_first, cross, key_padding, causal):
    """torch.nn.MultiheadAttention (embed 16, 4 heads, biases) in float64: outputs (need_weights=False)
    and the gradients of the inputs and of in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias."""
    p = f"mha.{name}."
    g = case_generator(p)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=batch_first).to(torch.float64)
    randomize(mha, g, 0.3)
    n, l, s_len = 2, 5, (7 if cross else 5)
    shape = (lambda t: (n, t, 16)) if batch_first else (lambda t: (t, n, 16))
    q = torch.randn(shape(l), generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(shape(s_len), generator=g, dtype=torch.float64, requires_grad=True) if cross else q
    v = torch.randn(shape(s_len), generator=g, dtype=torch.float64, requires_grad=True) if cross else q
    kpm = None
    if key_padding:
        kpm = torch.zeros(n, s_len, dtype=torch.bool)
        kpm[0, -2:] = True
        kpm[1, 1] = True
    mask = torch.nn.Transformer.generate_square_subsequent_mask(l, dtype=torch.float64) if causal else None
    y, _ = mha(q, k, v, key_padding_mask=kpm, need_weights=False, attn_mask=mask, is_causal=causal)
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(up)
    for key, t in [("query", q), ("upstream", up), ("out", y)] + ([("key", k), ("value", v)] if cross else []):
        out[p + key] = t.detach().contiguous()
    for key, t in [("query", q)] + ([("key", k), ("value", v)] if cross else []):
        out[p + "grad_" + key] = t.grad.contiguous()
    if kpm is not None:
        out[p + "key_padding_mask"] = kpm.to(torch.float64)
    for pname, param in mha.named_parameters():
        out[p + "param." + pname] = param.detach().contiguous()
        out[p + "grad." + pname] = param.grad.contiguous()
    meta[p + "config"] = (f"nn.MultiheadAttention(16, 4, batch_first={batch_first}), cross={cross}, "
                          f"key_padding_mask={key_padding} (true = ignored), causal={causal}, float64")


mha_case("cross_padded", batch_first=True, cross=True, key_padding=True, causal=False)
mha_case("self_causal", batch_first=False, cross=False, key_padding=False, causal=True)

meta["generator"] = f"scripts/make_transformer_golden.py, torch {torch.__version__}, transformers {transformers.__version__}"
save_file(out, "Tests/Fixtures/golden/transformer_ops.safetensors", metadata=meta)
print(f"{len(out)} tensors")
