"""PyTorch reference for `tandem train --model mambaout-mini --dataset mnist`: MambaOut (yuweihao/
MambaOut, Gated CNN blocks) with Tandem's `mini` preset, depths [1, 1, 2, 1], dims [16, 32, 64, 96],
1 input channel, 10 classes, with the reference's (and Tandem's) state-dict names
(`downsample_layers.<i>.*`, `stages.<i>.<j>.*`, `norm.*`, `head.*`), so a Tandem checkpoint loads
with strict=True. Layers keep PyTorch's default initialisation, as in Tandem (the reference
re-initialises Linear/Conv2d with trunc_normal(std 0.02)); no drop path. Same recipe and timing
rule as Tandem (see mnist_train.py).

    python Benchmarks/pytorch/mambaout.py --batch-size 64 --threads 2 --epochs 1
    python Benchmarks/pytorch/mambaout.py --check-weights /tmp/morun/model.safetensors
"""
from functools import partial

import torch
import torch.nn as nn

from mnist_train import main

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class GatedCNNBlock(nn.Module):
    """Channels-last [B, H, W, dim] → same: fc2(gelu(g) · cat(i, dwconv(c))) + x, with g, i, c the split of fc1(norm(x))."""

    def __init__(self, dim, expansion_ratio=8 / 3, kernel_size=7, conv_ratio=1.0):
        super().__init__()
        self.norm = LayerNorm(dim)
        hidden = int(expansion_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden * 2)
        self.act = nn.GELU()
        conv_channels = int(conv_ratio * dim)
        self.split_indices = (hidden, hidden - conv_channels, conv_channels)
        self.conv = nn.Conv2d(conv_channels, conv_channels, kernel_size=kernel_size, padding=kernel_size // 2, groups=conv_channels)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        g, i, c = torch.split(self.fc1(self.norm(x)), self.split_indices, dim=-1)
        c = self.conv(c.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(self.act(g) * torch.cat((i, c), dim=-1)) + x


class StemLayer(nn.Module):
    """[B, C, H, W] → [B, H/4, W/4, out] (channels last)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels // 2, kernel_size=3, stride=2, padding=1)
        self.norm1 = LayerNorm(out_channels // 2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(out_channels // 2, out_channels, kernel_size=3, stride=2, padding=1)
        self.norm2 = LayerNorm(out_channels)

    def forward(self, x):
        x = self.norm1(self.conv1(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.norm2(self.conv2(self.act(x)).permute(0, 2, 3, 1))


class DownsampleLayer(nn.Module):
    """[B, H, W, in] → [B, H/2, W/2, out] (channels last)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)
        self.norm = LayerNorm(out_channels)

    def forward(self, x):
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class MlpHead(nn.Module):
    def __init__(self, dim, num_classes, mlp_ratio=4):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.norm = LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(self.norm(self.act(self.fc1(x))))


class MambaOut(nn.Module):
    def __init__(self, in_chans=1, num_classes=10, depths=(1, 1, 2, 1), dims=(16, 32, 64, 96), kernel_size=7, conv_ratio=1.0):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [StemLayer(in_chans, dims[0])] + [DownsampleLayer(dims[i], dims[i + 1]) for i in range(len(dims) - 1)])
        self.stages = nn.ModuleList(
            nn.Sequential(*[GatedCNNBlock(dim, kernel_size=kernel_size, conv_ratio=conv_ratio) for _ in range(depth)])
            for depth, dim in zip(depths, dims))
        self.norm = LayerNorm(dims[-1])
        self.head = MlpHead(dims[-1], num_classes)

    def forward(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean([1, 2])))


if __name__ == "__main__":
    main("mambaout-mini", MambaOut, __doc__.splitlines()[0])
