"""Table 1 with fitted kernels (``--set fit_hyperparameters=true``): each kernel's
hyperparameters chosen by the GP marginal likelihood
([`fit_hyperparameters`][hyperlab.kernels.gp.fit_hyperparameters]) on the first pixel draw's
samples, then the same kernel regression (Eq. 18) with the fitted kernel and the fitted noise as
the ridge. Free: f's input scale (the kernels' overall scale: a ReLU kernel is homogeneous, so
the weight variances are held), g's RBF lengthscale on the pixel coordinates, and the noise.
Whether this closes the gap between our rows and the printed ones is what the run records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hyperlab.kernels import HyperKernel, fit_kernel_regression
from hyperlab.kernels.gp import HyperGPKernel, HyperparameterFit, fit_hyperparameters

__all__ = ["FREE", "FITTED", "FittedSolver", "fit_kernel", "solve_fitted"]

#: the hyperparameters the marginal likelihood chooses (besides the noise)
FREE = ("f_input_scale", "g_lengthscale")
#: the suffix of a fitted variant's rows
FITTED = "+fitted"


def fit_kernel(
    kern: HyperKernel,
    get: str,
    train: tuple[Tensor, Tensor],
    y: Tensor,
    *,
    points: int,
    steps: int,
    noise: float,
    generator: torch.Generator,
) -> tuple[HyperGPKernel, HyperparameterFit]:
    """``kern``'s ``get`` kernel with ``FREE``
    and the noise fitted on ``points`` random samples of (``train``, ``y``)."""
    gp = HyperGPKernel.from_analytic(kern, get)
    u = torch.cat(train, 1).to(torch.float64)
    idx = torch.randperm(len(y), generator=generator)[:points].to(u.device)
    fixed = tuple(n for n in gp.hyper_names if n not in FREE)
    fit = fit_hyperparameters(gp, u[idx], y[idx], noise=noise, steps=steps, fixed=fixed)
    return gp, fit


def solve_fitted(
    gp: HyperGPKernel, noise: float, train: tuple[Tensor, Tensor], y: Tensor
) -> Callable[[tuple[Tensor, Tensor]], Tensor]:
    """Eq. 18 with the fitted kernel (dense Cholesky, ridge = the fitted noise): a function
    from test inputs (x, z) to the predictions."""
    u = torch.cat(train, 1).to(torch.float64)
    with torch.no_grad():
        fit = fit_kernel_regression(gp(u), y=y, eps=noise, jitter="auto")

    def predict(test: tuple[Tensor, Tensor]) -> Tensor:
        with torch.no_grad():
            return fit.predict(gp(torch.cat(test, 1).to(torch.float64), u)).mean

    return predict


class FittedSolver:
    """The fitted form of one kernel variant: fits per key (task, N) on the key's first
    training set, reused for its later pixel draws; ``kernels``: row name -> ``get``."""

    def __init__(
        self, kern: HyperKernel, kernels: dict[str, str], *, points: int, steps: int,
        noise: float, generator: Callable[..., torch.Generator],
    ):  # fmt: skip
        self.kern, self.kernels = kern, kernels
        self.points, self.steps, self.noise, self.generator = points, steps, noise, generator
        self.fits: dict[Any, dict[str, tuple[HyperGPKernel, HyperparameterFit]]] = {}

    def __call__(self, key: Any, train: tuple[Tensor, Tensor], y: Tensor) -> tuple:
        if key not in self.fits:
            self.fits[key] = {
                name: fit_kernel(self.kern, get, train, y, points=self.points,
                                 steps=self.steps, noise=self.noise,
                                 generator=self.generator("fit", *key, name))
                for name, get in self.kernels.items()
            }  # fmt: skip
        solves = {n: solve_fitted(gp, f.noise, train, y) for n, (gp, f) in self.fits[key].items()}
        info = {
            "fitted": {
                name: {
                    "noise": f.noise,
                    "noise_se": f.standard_errors.get("noise", [float("nan")])[0],
                    **{h: f.values[h][0] for h in FREE},
                    **{f"{h}_se": f.standard_errors.get(h, [float("nan")])[0] for h in FREE},
                    "log_marginal_likelihood": [f.history[0], f.history[-1]],
                }
                for name, (_, f) in self.fits[key].items()
            }
        }

        def predict(test: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
            return {name: solve(test) for name, solve in solves.items()}

        return predict, info
