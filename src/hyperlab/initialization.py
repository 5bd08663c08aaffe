"""Hyperfan-in initialisation of a hypernetwork's head (Chang, Flokas & Lipson, ICLR 2020).

It sets the hypernetwork's output layer so that the
*generated* weights start with the variance a directly-trained primary would get, instead of the
product of two fan-in scalings that a standard init of the hypernetwork gives.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hyperlab.primary import Primary


def hyperfan_in_std(primary: Primary, in_features: int, feature_second_moment: float) -> Tensor:
    """Per-output std of a linear head so generated weights get ``primary.target_variance``.

    A generated weight is θ_j = Σ_k H_jk e_k + c_j; with zero-mean H and zero c its variance is
    d_k · Var(H_j) · E[e²]. Rows that generate biases, norm scales and shifts get std 0 (they
    start at their mean, [`target_mean`][hyperlab.initialization.target_mean]: 0, or 1 for a scale)
    but still receive gradients.
    """
    if feature_second_moment <= 0 or not math.isfinite(feature_second_moment):
        raise ValueError(
            f"feature_second_moment: expected a positive finite number, got {feature_second_moment}"
        )
    stds = []
    for s in primary.layout:
        if s.role == "weight":
            std = math.sqrt(primary.target_variance(s) / (in_features * feature_second_moment))
        else:
            std = 0.0
        stds.append(torch.full((s.numel,), std))
    return torch.cat(stds)


def target_std(primary: Primary) -> Tensor:
    """Per-coordinate std the generated θ should have at init (biases: a tenth of the weights';
    norm scales and shifts: 0.1 around their mean, so they start near 1 and 0 and still learn)."""
    stds = []
    for s in primary.layout:
        if s.role == "weight":
            std = math.sqrt(primary.target_variance(s))
        elif s.role in ("scale", "shift"):
            std = 0.1
        else:
            std = 0.1 * math.sqrt(primary.target_variance(s))
        stds.append(torch.full((s.numel,), std))
    return torch.cat(stds)


def target_mean(primary: Primary) -> Tensor:
    """Per-coordinate mean the generated θ should start at (norm scales 1, the rest 0 unless
    the primary sets a tensor's own init mean): the head's bias at init."""
    return torch.cat([torch.full((s.numel,), s.init_mean) for s in primary.layout])
