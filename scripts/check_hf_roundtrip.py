"""Check that a Hugging Face checkpoint folder loads in transformers and reproduces reference logits.

    /path/to/venv/bin/python scripts/check_hf_roundtrip.py FOLDER REFERENCE.safetensors [--atol 1e-4]

Loads FOLDER with transformers' AutoModelForCausalLM.from_pretrained in float32 (eval mode, offline),
runs REFERENCE's "input_ids" and prints max |logits - REFERENCE "logits"|. Exits non-zero if that
exceeds --atol (default 1e-4), or if loading reported missing, unexpected or mismatched weights (so a
weight silently left at its random initialization cannot pass). REFERENCE is a reference.safetensors
written by scripts/make_hf_fixtures.py (made with transformers 5.25.0); used to check that folders
written by Tandem load in transformers. Not needed by the tests.
"""
import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("reference")
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args()

    ref = load_file(args.reference)
    model, info = AutoModelForCausalLM.from_pretrained(args.folder, dtype=torch.float32, output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    with torch.no_grad():
        logits = model(ref["input_ids"]).logits
    err = (logits.double() - ref["logits"].double()).abs().max().item()
    print(f"transformers {transformers.__version__}: {type(model).__name__} from {args.folder}, "
          f"attn={model.config._attn_implementation}, max|logits - reference| = {err:.3e} (atol {args.atol:g})")
    for k, v in problems.items():
        print(f"  {k}: {sorted(v) if not isinstance(v, list) else v}")
    if logits.shape != ref["logits"].shape:
        print(f"  shape {tuple(logits.shape)} != reference {tuple(ref['logits'].shape)}")
        return 1
    if problems or not err <= args.atol:
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
