"""Kernel regression with a hyperkernel or NNGP (infinite-width paper, Eq. 18).

ŷ(u) = K(u, U) (K(U, U) + ε I)⁻¹ Y with ε = 0.001, solved by Cholesky in float64, and the
NNGP posterior variance k(u, u) - K(u, U) (K(U, U) + ε I)⁻¹ K(U, u). ``ridge='relative'`` is
the released code's ε · diag(diag K) (notes B.2, where ε = 1e-9).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "KernelRegressionFit",
    "NotPositiveDefiniteError",
    "RegressionResult",
    "fit_kernel_regression",
    "kernel_regression",
    "kernel_predict",
]


class NotPositiveDefiniteError(ValueError):
    """The regularised training kernel is not positive definite."""


@dataclass
class RegressionResult:
    """Prediction ``mean`` (M,) or (M, T); ``variance`` (M,) if test diagonals were given;
    ``alpha`` = (K + εI)⁻¹ Y; ``jitter``: diagonal jitter added beyond the ridge (0 if none)."""

    mean: Tensor
    alpha: Tensor
    variance: Tensor | None = None
    jitter: float = 0.0


def _f64(t: object, argument: str) -> Tensor:
    if not torch.is_tensor(t):
        try:
            t = torch.as_tensor(t)
        except Exception as err:  # noqa: BLE001
            raise TypeError(f"{argument}: expected a tensor, got {type(t)}") from err
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{argument}: contains NaN or infinite values")
    return t


@dataclass
class KernelRegressionFit:
    """A factorised training system (K + εI = L Lᵀ) and α = (K + εI)⁻¹ Y: predict any number of
    test points against it without factorising again (:func:`fit_kernel_regression`)."""

    chol: Tensor
    alpha: Tensor
    jitter: float
    squeeze: bool

    def predict(self, k_test_train: Tensor, k_test_diag: Tensor | None = None) -> RegressionResult:
        """ŷ = K(u, U) α (Eq. 18) for ``k_test_train`` (M, N); with ``k_test_diag`` (M,) also the
        NNGP posterior variance."""
        n = self.chol.shape[0]
        ks = _f64(k_test_train, "k_test_train").to(self.chol.device)
        if ks.dim() != 2 or ks.shape[1] != n:
            raise ValueError(f"k_test_train: expected shape (M, {n}), got {tuple(ks.shape)}")
        mean = ks @ self.alpha
        variance = None
        if k_test_diag is not None:
            kd = _f64(k_test_diag, "k_test_diag").to(ks.device)
            if kd.shape != (ks.shape[0],):
                raise ValueError(
                    f"k_test_diag: expected shape ({ks.shape[0]},), got {tuple(kd.shape)}"
                )
            v = torch.linalg.solve_triangular(self.chol, ks.T, upper=False)  # (N, M)
            variance = (kd - (v * v).sum(0)).clamp_min(0.0)
        alpha = self.alpha
        if self.squeeze:
            mean, alpha = mean[:, 0], alpha[:, 0]
        return RegressionResult(mean=mean, alpha=alpha, variance=variance, jitter=self.jitter)


def fit_kernel_regression(
    k_train: Tensor,
    y_train: Tensor,
    *,
    eps: float = 1e-3,
    ridge: Literal["identity", "relative"] = "identity",
    jitter: float | Literal["auto"] | None = None,
    max_jitter: float = 1e-2,
) -> KernelRegressionFit:
    """Factorise K + εI once (Cholesky, float64) and solve for α (Eq. 18).

    ``k_train`` (N, N), ``y_train`` (N,) or (N, T). If K + εI is not positive definite: with
    ``jitter=None`` a :class:`NotPositiveDefiniteError` is raised; with a float that jitter is
    added; with ``'auto'`` jitter grows tenfold from 1e-10·mean diag up to ``max_jitter``·mean
    diag, and the amount used is warned about and recorded.
    """
    if not eps >= 0:
        raise ValueError(f"eps: expected a non-negative float, got {eps!r}")
    if ridge not in ("identity", "relative"):
        raise ValueError(f"ridge: expected 'identity' or 'relative', got {ridge!r}")
    k = _f64(k_train, "k_train")
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"k_train: expected a square (N, N) matrix, got {tuple(k.shape)}")
    n = k.shape[0]
    y = _f64(y_train, "y_train").to(k.device)
    if y.dim() not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"y_train: expected shape ({n},) or ({n}, T), got {tuple(y.shape)}")
    scale = float(torch.diagonal(k).abs().mean()) or 1.0
    asym = float((k - k.T).abs().max())
    if asym > 1e-8 * scale:
        raise ValueError(f"k_train: expected a symmetric matrix, max |K - Kᵀ| = {asym:.3g}")
    diag = torch.diagonal(k).clone()
    reg = eps * diag if ridge == "relative" else torch.full_like(diag, eps)
    a = k.clone()
    a.diagonal().add_(reg)
    chol, info = torch.linalg.cholesky_ex(a)
    used = 0.0
    if int(info) != 0:
        if jitter is None:
            raise NotPositiveDefiniteError(
                f"k_train + eps·I (eps={eps:g}, ridge={ridge!r}) is not positive definite "
                f"(Cholesky failed at column {int(info)}); increase eps or pass jitter='auto'"
            )
        tries = (
            [float(jitter)]
            if jitter != "auto"
            else [scale * 10.0**p for p in range(-10, 1) if 10.0**p <= max_jitter]
        )
        for j in tries:
            a2 = a.clone()
            a2.diagonal().add_(j)
            chol, info = torch.linalg.cholesky_ex(a2)
            if int(info) == 0:
                used = j
                break
        if int(info) != 0:
            raise NotPositiveDefiniteError(
                f"k_train + eps·I is not positive definite even with jitter {tries[-1]:.3g}; "
                "check the kernel (NaN-free, symmetric) or increase eps"
            )
        warnings.warn(
            f"kernel_regression: k_train + eps·I was not positive definite; added jitter "
            f"{used:.3g} to the diagonal",
            RuntimeWarning,
            stacklevel=2,
        )
    yy = y if y.dim() == 2 else y[:, None]
    alpha = torch.cholesky_solve(yy, chol)
    return KernelRegressionFit(chol=chol, alpha=alpha, jitter=used, squeeze=y.dim() == 1)


def kernel_regression(
    k_train: Tensor,
    y_train: Tensor,
    k_test_train: Tensor,
    *,
    eps: float = 1e-3,
    ridge: Literal["identity", "relative"] = "identity",
    k_test_diag: Tensor | None = None,
    jitter: float | Literal["auto"] | None = None,
    max_jitter: float = 1e-2,
) -> RegressionResult:
    """Kernel (ridge) regression of Eq. 18, ε = 0.001 by default: :func:`fit_kernel_regression`
    then :meth:`KernelRegressionFit.predict` (see both for the arguments)."""
    fit = fit_kernel_regression(k_train, y_train, eps=eps, ridge=ridge, jitter=jitter,
                                max_jitter=max_jitter)  # fmt: skip
    return fit.predict(k_test_train, k_test_diag)


def kernel_predict(
    kernel: Callable,
    train: object,
    y_train: Tensor,
    test: object,
    *,
    get: Literal["nngp", "ntk"] = "ntk",
    variance: bool = False,
    block_size: int = 1024,
    **kw,
) -> RegressionResult:
    """Eq. 18 with an analytic kernel object (:class:`~hyperlab.kernels.HyperKernel`,
    :class:`~hyperlab.kernels.MLPKernel`): builds K(U, U), K(u, U) and, with ``variance``,
    the test diagonal (in row blocks, never the full test matrix). ``kw`` go to
    :func:`kernel_regression`."""
    k_train = kernel(train, get=get, block_size=block_size)
    k_cross = kernel(test, train, get=get, block_size=block_size)
    diag = None
    if variance:
        m = k_cross.shape[0]
        parts = []
        for i in range(0, m, block_size):
            sub = _rows(test, slice(i, min(i + block_size, m)))
            parts.append(torch.diagonal(kernel(sub, get=get, block_size=block_size)))
        diag = torch.cat(parts)
    return kernel_regression(k_train, y_train, k_cross, k_test_diag=diag, **kw)


def _rows(u: object, s: slice) -> object:
    if isinstance(u, (tuple, list)):
        return type(u)(t[s] for t in u)
    return u[s]  # type: ignore[index]
