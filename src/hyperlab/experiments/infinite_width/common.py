"""What the infinite-width experiments share: float64 NTK-parameterised hypernetworks."""

from __future__ import annotations

import torch

from hyperlab.hypernet import HyperModel
from hyperlab.primary import MLP

DT = torch.float64


def ntk_hypermodel(
    x_dim: int,
    z_dim: int,
    f_width: int,
    f_depth: int,
    g_width: int,
    g_depth: int,
    generator: torch.Generator,
) -> HyperModel:
    """h = g(z; f(x)), both bias-free ReLU MLPs in NTK parameterization (Eq. 2-3), float64."""
    g = MLP([z_dim, *[g_width] * (g_depth - 1), 1], "relu", bias=False, parameterization="ntk")
    model = HyperModel(g, x_dim, [f_width] * (f_depth - 1), parameterization="ntk", bias=False,
                       generator=generator)  # fmt: skip
    return model.to(DT)
