"""hyperlab's neural kernels inside GPyTorch (``pip install hyperlab[gpytorch]``): the MLP
NNGP/NTK and the hypernetwork NNGP / hyperkernel (both variants) as a
``gpytorch.kernels.Kernel`` whose hyperparameters (σ_in², per-layer σ_w² and σ_b², the input
lengthscale; f's and g's for a hypernetwork) are GPyTorch parameters with ``Positive``
constraints: usable in an ``ExactGP``, trained with ``ExactMarginalLogLikelihood``, and in a
BoTorch ``SingleTaskGP`` (``covar_module=``). The mathematics is
[`hyperlab.kernels.gp`][hyperlab.kernels.gp].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

try:
    import gpytorch
except ImportError as err:  # pragma: no cover - the optional dependency is absent
    raise ImportError(
        "hyperlab.kernels.gpytorch needs GPyTorch: pip install 'hyperlab[gpytorch]'"
    ) from err

from hyperlab.kernels.analytic import HyperKernel, MLPKernel
from hyperlab.kernels.gp import HyperGPKernel, MLPGPKernel

__all__ = ["NeuralKernel"]


class NeuralKernel(gpytorch.kernels.Kernel):
    """A neural kernel as a GPyTorch kernel. ``kernel``: an analytic kernel
    ([`MLPKernel`][hyperlab.kernels.analytic.MLPKernel],
    [`HyperKernel`][hyperlab.kernels.analytic.HyperKernel]: its
    fixed
    constants become the starting values) or a [`MLPGPKernel`][hyperlab.kernels.gp.MLPGPKernel] /
    [`HyperGPKernel`][hyperlab.kernels.gp.HyperGPKernel]; ``get``: 'nngp' or 'ntk'. A hypernetwork's
    inputs are [x, z] concatenated (x, f's input, first). Wrap in ``ScaleKernel`` for an
    output scale as usual."""

    has_lengthscale = False

    def __init__(self, kernel: Any, get: str = "nngp", **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(kernel, MLPKernel):
            kernel = MLPGPKernel.from_analytic(kernel, get)
        elif isinstance(kernel, HyperKernel):
            kernel = HyperGPKernel.from_analytic(kernel, get)
        if not isinstance(kernel, (MLPGPKernel, HyperGPKernel)):
            raise TypeError(
                f"kernel: expected MLPKernel, HyperKernel, MLPGPKernel or "
                f"HyperGPKernel, got {type(kernel)}"
            )
        self._spec = [kernel]  # the static configuration and the mathematics
        with torch.no_grad():
            values = kernel.values()
        for name in kernel.hyper_names:
            v = values[name].detach().to(torch.float64).clamp_min(1e-18)
            raw = v + torch.log(-torch.expm1(-v))  # softplus⁻¹ in float64: Positive's transform
            self.register_parameter(f"raw_{name}", torch.nn.Parameter(raw))
            self.register_constraint(f"raw_{name}", gpytorch.constraints.Positive())

    @property
    def spec(self) -> MLPGPKernel | HyperGPKernel:
        return self._spec[0]

    def hyperparameters(self) -> dict[str, Tensor]:
        """Every hyperparameter's value (through its constraint)."""
        return {
            n: getattr(self, f"raw_{n}_constraint").transform(getattr(self, f"raw_{n}"))
            for n in self.spec.hyper_names
        }

    def forward(
        self,
        x1: Tensor,
        x2: Tensor,
        diag: bool = False,
        last_dim_is_batch: bool = False,
        **params: Any,
    ) -> Tensor:
        if last_dim_is_batch or x1.dim() != 2 or x2.dim() != 2:
            raise ValueError("x1, x2: NeuralKernel takes (n, d) inputs (no batch dimensions)")
        values = self.hyperparameters()
        if diag:  # row i against row i (the recursions are elementwise)
            return self.spec.evaluate(values, x1, x2, pairwise=True)
        return self.spec.evaluate(values, x1, x2)
