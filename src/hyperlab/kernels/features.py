"""Random Fourier features p(z) = √2 · cos(W z + b) (infinite-width paper, Remarks 2-3).

With W ~ N(0, 1/ℓ²) and b ~ U[-π, π], p(z)·p(z')/k → exp(-‖z - z'‖²/(2ℓ²)) as k → ∞, so a
network fed p(z) in NTK parameterization sees the input kernel ``'rbf'`` of
[`hyperlab.kernels.analytic.input_kernel`][hyperlab.kernels.analytic.input_kernel]: the kernels
then depend on z only through
exp(-‖z - z'‖²/2) (ℓ = 1, the paper's case). The factor √2 makes p(z)·p(z)/k → 1; the paper's
p(z) = cos(Wz + b) has the same kernel times ½ (``scale=1.0``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hyperlab.primary import check_finite

__all__ = ["FourierFeatures", "rbf_kernel"]


class FourierFeatures(nn.Module):
    """Fixed (not trained) random Fourier features of ``in_features``-dim inputs.

    ``lengthscale`` ℓ sets W ~ N(0, ℓ⁻²); ``scale`` multiplies the cosines (√2 by default).
    The released code's g-input kernel exp(-‖p - p'‖²/4) on pixel coordinates is ℓ = √2.
    """

    def __init__(
        self,
        in_features: int,
        num_features: int,
        *,
        lengthscale: float = 1.0,
        scale: float = math.sqrt(2.0),
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if int(in_features) <= 0 or int(num_features) <= 0:
            raise ValueError(
                "in_features, num_features: expected positive ints, got "
                f"{in_features}, {num_features}"
            )
        if not lengthscale > 0:
            raise ValueError(f"lengthscale: expected a positive float, got {lengthscale!r}")
        self.in_features, self.num_features = int(in_features), int(num_features)
        self.lengthscale, self.scale = float(lengthscale), float(scale)
        w = torch.randn(num_features, in_features, generator=generator, dtype=dtype) / lengthscale
        b = (torch.rand(num_features, generator=generator, dtype=dtype) * 2 - 1) * math.pi
        self.weight: Tensor
        self.bias: Tensor
        self.register_buffer("weight", w)
        self.register_buffer("bias", b)

    def forward(self, z: Tensor) -> Tensor:
        """p(z) of shape (..., num_features) for z of shape (..., in_features)."""
        if not torch.is_tensor(z):
            raise TypeError(f"z: expected a tensor, got {type(z)}")
        if z.shape[-1:] != (self.in_features,):
            raise ValueError(f"z: expected shape (..., {self.in_features}), got {tuple(z.shape)}")
        check_finite(z, "z")
        w = self.weight.to(z.dtype)
        return self.scale * torch.cos(z @ w.T + self.bias.to(z.dtype))

    def limit_kernel(self, z1: Tensor, z2: Tensor) -> Tensor:
        """The k → ∞ limit of p(z1)·p(z2)/k: (scale²/2) · exp(-‖z1 - z2‖²/(2ℓ²))."""
        return (self.scale**2 / 2) * rbf_kernel(z1, z2, self.lengthscale)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_features={self.num_features}, "
            f"lengthscale={self.lengthscale}, scale={self.scale:.4g}"
        )


def rbf_kernel(z1: Tensor, z2: Tensor, lengthscale: float = 1.0) -> Tensor:
    """exp(-‖z1_i - z2_j‖²/(2ℓ²)) for rows of z1 (N, d) and z2 (M, d), in float64."""
    z1, z2 = torch.as_tensor(z1, dtype=torch.float64), torch.as_tensor(z2, dtype=torch.float64)
    if z1.dim() != 2 or z2.dim() != 2 or z1.shape[-1] != z2.shape[-1]:
        raise ValueError(
            f"z1, z2: expected shapes (N, d) and (M, d), got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    d2 = torch.cdist(z1, z2).pow(2)
    return torch.exp(-d2 / (2.0 * lengthscale**2))
