"""Checks that a Tandem checkpoint loads into PyTorch's ConvNet with
safetensors.torch.load_file and gives the same predictions as `tandem eval`.

    tandem train --model convnet --max-steps 50 --out /tmp/run
    tandem eval --model convnet --weights /tmp/run/model.safetensors --predictions /tmp/pred.safetensors
    python scripts/check_torch_interop.py /tmp/run/model.safetensors /tmp/pred.safetensors
"""
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, "Benchmarks/pytorch")
from mnist_convnet import ConvNet  # noqa: E402
from mnist_train import load_mnist  # noqa: E402

model = ConvNet()
model.load_state_dict(load_file(sys.argv[1]))  # strict: every name and shape must match
model.eval()
images, _ = load_mnist("Data/mnist", "t10k")
with torch.no_grad():
    ours = torch.cat([model(images[i:i + 1000]).argmax(1) for i in range(0, len(images), 1000)])
tandem = load_file(sys.argv[2])["predictions"]
agree = (ours == tandem).float().mean().item()
print(f"PyTorch and Tandem predictions agree on {agree * 100:.2f}% of {len(ours)} test images")
sys.exit(0 if agree > 0.999 else 1)
