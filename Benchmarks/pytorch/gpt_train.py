"""PyTorch side of `tandem bench gpt`: GPT-2 training steps and cached greedy generation.

A nanoGPT-like GPT-2 in plain torch with Hugging Face GPT-2's parameter names and semantics
(byte-level vocabulary of 256, learned positions, pre-LayerNorm blocks with eps 1e-5, one fused
`c_attn` projection, causal attention through F.scaled_dot_product_attention, GELU with the tanh
approximation ("gelu_new"), `lm_head` tied to `wte`, no dropout). The projections are nn.Linear
([out, in] weights, as in nanoGPT); Hugging Face's Conv1D stores them transposed.

Training (default): AdamW (lr 1e-3, weight decay 0.1 on every parameter), cross-entropy over all
positions of one fixed random batch of byte windows, gradient clipping at 1. A timed step is
zero_grad (set to None) + forward + loss + backward + clip + optimizer step. `--warmup-steps`
untimed steps, then `--steps` timed ones; the median is the upper middle sample (as Tandem's).

`--generate`: the same model (random init, seed 0) decodes 256 new tokens greedily after a
16-token prompt, batch 1, under no_grad, with a key/value cache written by hand: the prompt fills
the cache in one forward pass, then each token is fed alone. One untimed 8-token run first, then
one timed 256-token run (prefill included); tokens_per_second = 256 / seconds.

    python Benchmarks/pytorch/gpt_train.py --threads 1,2
    python Benchmarks/pytorch/gpt_train.py --threads 1,2 --generate
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PROMPT, NEW_TOKENS = 16, 256


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x, cache=None):
        """x [B, L, C]; cache: None, or a [keys, values] list for this layer (updated in place)."""
        b, l, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (t.view(b, l, self.heads, c // self.heads).transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:
            if cache[0] is not None:
                past = cache[0].shape[2]
                k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
            cache[0], cache[1] = k, v
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif l == 1:
            y = F.scaled_dot_product_attention(q, k, v)  # the new query sees the whole cache
        else:  # several new queries after a cache: query i sees keys up to past + i
            mask = torch.ones(l, past + l, dtype=torch.bool).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).reshape(b, l, c))


class MLP(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = CausalSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = MLP(width)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, layers, heads, width, positions, vocab=256):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, width),
            wpe=nn.Embedding(positions, width),
            h=nn.ModuleList(Block(width, heads) for _ in range(layers)),
            ln_f=nn.LayerNorm(width, eps=1e-5)))
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight
        for name, p in self.named_parameters():  # GPT-2's initialisation
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, caches=None):
        """idx [B, L] → logits [B, L, vocab]; caches: None or one [keys, values] per layer."""
        past = 0 if caches is None or caches[0][0] is None else caches[0][0].shape[2]
        pos = torch.arange(past, past + idx.shape[1])
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if caches is None else caches[i])
        return self.lm_head(self.transformer.ln_f(x))

    @torch.no_grad()
    def generate(self, prompt, count):
        """Greedy decoding with the cache: (new tokens, logits [vocab] that chose the last one)."""
        caches = [[None, None] for _ in self.transformer.h]
        logits = self(torch.tensor([prompt]), caches)[0, -1]
        out = []
        while True:
            out.append(int(logits.argmax()))
            if len(out) == count:
                return out, logits
            logits = self(torch.tensor([[out[-1]]]), caches)[0, -1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--generate", action="store_true", help="time cached greedy generation instead of training")
    args = parser.parse_args()
    checked = False
    for n in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(n)
        torch.manual_seed(0)
        positions = max(args.context, PROMPT + NEW_TOKENS) if args.generate else args.context
        model = GPT(args.layers, args.heads, args.width, positions)
        line = {"threads": n, "parameters": sum(p.numel() for p in model.parameters()),
                "framework": "pytorch", "torch": torch.__version__}
        if args.generate:
            model.eval()
            prompt = [(i * 37 + 11) % 256 for i in range(PROMPT)]
            model.generate(prompt, 8)
            start = time.perf_counter()
            tokens, last_logits = model.generate(prompt, NEW_TOKENS)
            seconds = time.perf_counter() - start
            if not checked:  # the cache's last logits against one full forward pass
                with torch.no_grad():
                    full = model(torch.tensor([prompt + tokens[:-1]]))[0, -1]
                diff = (full - last_logits).abs().max().item()
                assert diff <= 1e-4, f"cached logits differ from the full forward's by {diff}"
                line["cache_max_abs_diff"] = diff
                checked = True
            line["case"] = f"gpt_generate_l{args.layers}_h{args.heads}_d{args.width}_prompt{PROMPT}_new{NEW_TOKENS}"
            line["tokens_per_second"] = round(NEW_TOKENS / seconds, 1)
        else:
            model.train()
            g = torch.Generator().manual_seed(1)
            tokens = torch.randint(0, 256, (args.batch_size, args.context + 1), generator=g)
            x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].reshape(-1)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
            samples = []
            for step in range(args.warmup_steps + args.steps):
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x).view(-1, 256), y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                if step >= args.warmup_steps:
                    samples.append((time.perf_counter() - t0) * 1e3)
            median = sorted(samples)[len(samples) // 2]
            line["case"] = f"gpt_train_l{args.layers}_h{args.heads}_d{args.width}_ctx{args.context}_b{args.batch_size}"
            line["step_ms_median"] = round(median, 1)
            line["tokens_per_second"] = round(args.batch_size * args.context / median * 1000)
            line["loss"] = round(loss.item(), 4)
            line["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
