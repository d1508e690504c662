"""Tiny Hugging Face checkpoints for Tandem's transformers interop tests (issue 21).

Writes, in float32 with `save_pretrained(dir, safe_serialization=True)`:

    Tests/Fixtures/hf/gpt2-tiny/    GPT2LMHeadModel, 2 layers, n_embd 32, 4 heads, vocab 97, tied lm_head,
                                    bos/eos id 96
    Tests/Fixtures/hf/llama-tiny/   LlamaForCausalLM, 2 layers, hidden 32, 4 heads / 2 KV heads, vocab 97,
                                    untied lm_head

Each folder holds config.json, generation_config.json, model.safetensors (as transformers writes them)
and reference.safetensors with
    input_ids   int64   [2, 11]      random token ids in [0, 97), fixed seed
    logits      float32 [2, 11, 97]  model(input_ids).logits, model in float32, eval mode
    logits_f64  float64 [2, 11, 97]  the same with the model converted to float64
Its metadata records the transformers and torch versions and the attention implementation.

All LayerNorm weights/biases and all biases of GPT-2 and all RMSNorm weights of LLaMA are randomized (not
left at 1/0) so that loaders that drop or misplace them fail the tests.

For logits_f64 of LLaMA, transformers' LlamaRMSNorm (which rounds through float32) and
LlamaRotaryEmbedding (which computes inv_freq, angles and cos/sin in float32) are temporarily replaced
by the same formulas evaluated in float64, so logits_f64 is a true float64 reference; the float32
`logits` come from the unmodified transformers code. GPT-2 needs no such change.

Run from the repository root with a Python that has torch, safetensors and transformers (not needed by
the tests):

    /path/to/venv/bin/python scripts/make_hf_fixtures.py

Made with transformers 5.25.0 and torch 2.15.0. Check a folder (e.g. one written by Tandem) with
scripts/check_hf_roundtrip.py FOLDER FOLDER/reference.safetensors.
"""
import contextlib
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama

ROOT = "Tests/Fixtures/hf"
KEEP = {"config.json", "generation_config.json", "model.safetensors", "reference.safetensors"}


@contextlib.contextmanager
def llama_float64_numerics():
    """LlamaRMSNorm and LlamaRotaryEmbedding evaluated in the input's dtype instead of float32."""
    norm_forward = modeling_llama.LlamaRMSNorm.forward
    rotary_forward = modeling_llama.LlamaRotaryEmbedding.forward

    def rmsnorm(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rotary(self, x, position_ids):
        config = self.config
        assert self.rope_type == "default"
        theta = config.rope_parameters["rope_theta"]
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=x.dtype) / dim))
        freqs = position_ids[..., None].to(x.dtype) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    modeling_llama.LlamaRMSNorm.forward = rmsnorm
    modeling_llama.LlamaRotaryEmbedding.forward = rotary
    try:
        yield
    finally:
        modeling_llama.LlamaRMSNorm.forward = norm_forward
        modeling_llama.LlamaRotaryEmbedding.forward = rotary_forward


def write(name, model, input_ids, f64_context=contextlib.nullcontext):
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    model = model.float().eval()
    with torch.no_grad():
        logits = model(input_ids).logits
    model.save_pretrained(folder, safe_serialization=True)
    for f in sorted(os.listdir(folder)):
        if f not in KEEP:
            os.remove(os.path.join(folder, f))
            print(f"  removed {f}")
    attn = model.config._attn_implementation
    model64 = model.to(torch.float64)
    with torch.no_grad(), f64_context():
        logits64 = model64(input_ids).logits
    with torch.no_grad():
        stock64 = model64(input_ids).logits
    print(f"{name}: attn={attn} max|logits_f32 - logits_f64| = {(logits.double() - logits64).abs().max().item():.3e}"
          f", stock transformers float64 vs logits_f64 = {(stock64 - logits64).abs().max().item():.3e}"
          f", max|logits| = {logits64.abs().max().item():.3f}")
    save_file(
        {"input_ids": input_ids.contiguous(), "logits": logits.contiguous(), "logits_f64": logits64.contiguous()},
        os.path.join(folder, "reference.safetensors"),
        metadata={
            "generator": "scripts/make_hf_fixtures.py",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "attn_implementation": str(attn),
            "logits": "model(input_ids).logits, float32 model, eval mode",
            "logits_f64": "same with the model in float64"
            + (" (RMSNorm and rotary cos/sin evaluated in float64)" if f64_context is not contextlib.nullcontext else ""),
        },
    )
    total = 0
    for f in sorted(os.listdir(folder)):
        size = os.path.getsize(os.path.join(folder, f))
        total += size
        print(f"  {f:26s} {size:8d} bytes")
    print(f"  total {total} bytes")
    assert total < 300_000, f"{folder} too big"


def gpt2():
    torch.manual_seed(3000)
    config = GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4, activation_function="gelu_new",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                        initializer_range=0.1, tie_word_embeddings=True,
                        # GPT2Config's defaults (50256, GPT-2's <|endoftext|>, its last id) lie outside this
                        # vocabulary and make transformers warn; use the last id here too.
                        bos_token_id=96, eos_token_id=96)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    assert model.lm_head.weight is model.transformer.wte.weight
    input_ids = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(4000))
    write("gpt2-tiny", model, input_ids)


def llama():
    torch.manual_seed(3001)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
                         rope_theta=10000.0, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                         hidden_act="silu", initializer_range=0.1)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    input_ids = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(4001))
    write("llama-tiny", model, input_ids, llama_float64_numerics)


if __name__ == "__main__":
    print(f"transformers {transformers.__version__}, torch {torch.__version__}", file=sys.stderr)
    gpt2()
    llama()
