"""PyTorch reference for `tandem train --model kan --dataset mnist`: KAN([784, 64, 10]) in the
efficient-kan formulation, grid size 5, order 3, grid range [-1, 3] (covers MNIST normalised by
0.1307/0.3081), with Tandem's parameter names and shapes (`layers.<l>.base_weight [out, in]`,
`.spline_weight [out, in, 8]`, `.spline_scaler [out, in]`, buffer `.grid [in, 12]`), so a Tandem
checkpoint loads with strict=True. Same recipe and timing rule as Tandem (see mnist_train.py).

    python Benchmarks/pytorch/kan.py --batch-size 64 --threads 2 --epochs 1
    python Benchmarks/pytorch/kan.py --check-weights /tmp/kanrun/model.safetensors
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mnist_train import main


class KANLinear(nn.Module):
    """φ_ji(x) = base_weight[j, i]·SiLU(x) + spline_scaler[j, i]·Σ_k spline_weight[j, i, k]·B_k(x);
    output j = Σ_i φ_ji(x_i). Initialised like Tandem's KANLinear: base_weight and spline_scaler
    ~ U(±1/√in) (efficient-kan's kaiming_uniform(a=√5)), spline_weight ~ U(±scale_noise/(2·grid_size))."""

    def __init__(self, in_features, out_features, grid_size=5, spline_order=3, grid_range=(-1.0, 1.0), scale_noise=0.1):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        h = (grid_range[1] - grid_range[0]) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float64) * h + grid_range[0]
        self.register_buffer("grid", knots.float().expand(in_features, -1).contiguous())
        bound = 1 / math.sqrt(in_features)
        noise = scale_noise / (2 * grid_size)
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order).uniform_(-noise, noise))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))

    def b_splines(self, x):
        """Cox–de Boor: x [N, in] → [N, in, grid_size + spline_order] (order 0 on [t_j, t_{j+1}))."""
        grid = self.grid
        x = x.unsqueeze(-1)
        bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
        for k in range(1, self.spline_order + 1):
            bases = ((x - grid[:, :-(k + 1)]) / (grid[:, k:-1] - grid[:, :-(k + 1)]) * bases[:, :, :-1]
                     + (grid[:, k + 1:] - x) / (grid[:, k + 1:] - grid[:, 1:-k]) * bases[:, :, 1:])
        return bases

    def forward(self, x):
        base = F.linear(F.silu(x), self.base_weight)
        scaled = (self.spline_weight * self.spline_scaler.unsqueeze(-1)).reshape(self.out_features, -1)
        spline = F.linear(self.b_splines(x).reshape(x.size(0), -1), scaled)
        return base + spline


class KAN(nn.Module):
    def __init__(self, widths=(784, 64, 10), grid_size=5, spline_order=3, grid_range=(-1.0, 3.0)):
        super().__init__()
        self.layers = nn.ModuleList(KANLinear(i, o, grid_size, spline_order, grid_range)
                                    for i, o in zip(widths, widths[1:]))

    def forward(self, x):
        x = x.flatten(1)
        for layer in self.layers:
            x = layer(x)
        return x


if __name__ == "__main__":
    main("kan", KAN, __doc__.splitlines()[0])
