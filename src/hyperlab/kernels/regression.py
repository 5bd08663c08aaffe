"""Kernel regression with a hyperkernel or NNGP (infinite-width paper, Eq. 18): one front door.

ŷ(u) = K(u, U) (K(U, U) + ε I)⁻¹ Y with ε = 0.001, and the NNGP posterior variance
k(u, u) - K(u, U) (K(U, U) + ε I)⁻¹ K(U, u). ``ridge='relative'`` is the released code's
ε · diag(diag K) (notes B.2, where ε = 1e-9).

[`fit_kernel_regression`][hyperlab.kernels.regression.fit_kernel_regression] takes an analytic
kernel ([`MLPKernel`][hyperlab.kernels.analytic.MLPKernel],
[`HyperKernel`][hyperlab.kernels.analytic.HyperKernel]) and its training inputs, or a precomputed
K(U, U),
and
solves once by ``solver='cholesky'`` (dense, float64), ``'cg'`` (matrix-free preconditioned
conjugate gradients, [`hyperlab.kernels.iterative`][hyperlab.kernels.iterative], options in
[`CGOptions`][hyperlab.kernels.iterative.CGOptions]) or
``'auto'`` (dense while its matrices fit the memory budget; the choice and why are recorded).
Every solver returns a [`KernelFit`][hyperlab.kernels.regression.KernelFit] whose
[`KernelFit.predict`][hyperlab.kernels.regression.KernelFit.predict] gives the same
[`RegressionResult`][hyperlab.kernels.regression.RegressionResult] shapes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from hyperlab.kernels.iterative import CGFit, CGOptions, available_memory_bytes, solve_cg
from hyperlab.kernels.tiles import DEFAULT_BLOCK, Get, check_positive_int, parse_get

__all__ = [
    "CGOptions",
    "KernelFit",
    "NotPositiveDefiniteError",
    "RegressionResult",
    "fit_kernel_regression",
    "kernel_regression",
]

Solver = Literal["cholesky", "cg", "auto"]
Ridge = Literal["identity", "relative"]


class NotPositiveDefiniteError(ValueError):
    """The regularised training kernel is not positive definite."""


@dataclass
class RegressionResult:
    """Prediction ``mean`` (M,) or (M, T); ``variance`` (M,) where asked; ``alpha`` =
    (K + εI)⁻¹ Y; ``jitter``: diagonal jitter added beyond the ridge (0 if none)."""

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


def _factor(
    k: Tensor, y: Tensor, eps: float, ridge: Ridge, jitter: float | str | None, max_jitter: float
) -> tuple[Tensor, Tensor, float]:
    """Cholesky of K + εI (jitter as asked) and α: (L, α (N, T), jitter used)."""
    scale = float(torch.diagonal(k).abs().mean()) or 1.0
    asym = float((k - k.T).abs().max())
    if asym > 1e-8 * scale:
        raise ValueError(f"k_train: expected a symmetric matrix, max |K - Kᵀ| = {asym:.3g}")
    diag = torch.diagonal(k).clone()
    a = k.clone()
    a.diagonal().add_(eps * diag if ridge == "relative" else torch.full_like(diag, eps))
    chol, info = torch.linalg.cholesky_ex(a)
    used = 0.0
    if int(info) != 0:
        if jitter is None:
            raise NotPositiveDefiniteError(
                f"k_train + eps·I (eps={eps:g}, ridge={ridge!r}) is not positive definite "
                f"(Cholesky failed at column {int(info)}); increase eps or pass jitter='auto'"
            )
        auto = [scale * 10.0**p for p in range(-10, 1) if 10.0**p <= max_jitter]
        tries = [float(jitter)] if jitter != "auto" else auto
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
        msg = f"k_train + eps·I was not positive definite; added jitter {used:.3g}"
        warnings.warn(f"kernel_regression: {msg} to the diagonal", RuntimeWarning, stacklevel=3)
    return chol, torch.cholesky_solve(y, chol), used


def _rows(u: object, s: slice) -> object:
    if isinstance(u, (tuple, list)):
        return type(u)(t[s] for t in u)
    return u[s]  # type: ignore[index]


def _n_of(u: object) -> int:
    first = u[0] if isinstance(u, (tuple, list)) else u
    return int(first.shape[0])  # type: ignore[union-attr]


@dataclass
class KernelFit:
    """A solved Eq. 18 system: α per kernel and how it was reached (``solver``, ``reason``
    for an 'auto' choice, ``iterations`` and ``residual`` for CG, ``jitter`` for Cholesky).
    [`predict`][hyperlab.kernels.regression.KernelFit.predict] evaluates any number of test points
    against it."""

    solver: str
    alpha: dict[str, Tensor]
    kernel: Any = None
    train: Any = None
    eps: float = 1e-3
    ridge: str = "identity"
    reason: str = ""
    jitter: float = 0.0
    iterations: int = 0
    residual: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    block_size: int = DEFAULT_BLOCK
    squeeze: bool = False
    single: bool = True
    cg: CGOptions | None = None
    #: CG only: seconds of the preconditioner and of the iterations, Nyström's λ_r / μ
    #: ([`CGFit`][hyperlab.kernels.iterative.CGFit])
    cg_stats: dict[str, Any] = field(default_factory=dict)
    chol: dict[str, Tensor] = field(default_factory=dict)
    _cg_fit: CGFit | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.alpha)

    def predict(
        self, test: object, test_diag: Tensor | None = None, *, variance: bool = False
    ) -> Any:
        """ŷ = K(u, U) α (Eq. 18): a
        [`RegressionResult`][hyperlab.kernels.regression.RegressionResult] per kernel (a dict for
        several
        ``get`` names). ``test``: test inputs (a kernel fit) or K(u, U) (a matrix fit, with
        ``test_diag`` = k(u, u) for the variance). ``variance=True``: the posterior variance
        k(u, u) - K(u, U)(K + εI)⁻¹K(U, u) too (the NNGP's, for get='nngp')."""
        if self.kernel is None:
            out = {self.names[0]: self._predict_matrix(test, test_diag)}
        elif self.solver == "cholesky":
            out = self._predict_dense(test, variance)
        else:
            out = self._predict_cg(test, variance)
        return out[self.names[0]] if self.single else out

    def _result(self, name: str, mean: Tensor, var: Tensor | None) -> RegressionResult:
        alpha = self.alpha[name]
        if self.squeeze:
            mean, alpha = mean[:, 0], alpha[:, 0]
        return RegressionResult(mean=mean, alpha=alpha, variance=var, jitter=self.jitter)

    def _predict_matrix(self, k_test: object, diag: Tensor | None) -> RegressionResult:
        name = self.names[0]
        chol = self.chol[name]
        n = chol.shape[0]
        ks = _f64(k_test, "k_test_train").to(chol.device)
        if ks.dim() != 2 or ks.shape[1] != n:
            raise ValueError(f"k_test_train: expected shape (M, {n}), got {tuple(ks.shape)}")
        var = None
        if diag is not None:
            kd = _f64(diag, "k_test_diag").to(ks.device)
            if kd.shape != (ks.shape[0],):
                raise ValueError(
                    f"k_test_diag: expected shape ({ks.shape[0]},), got {tuple(kd.shape)}"
                )
            v = torch.linalg.solve_triangular(chol, ks.T, upper=False)
            var = (kd - (v * v).sum(0)).clamp_min(0.0)
        return self._result(name, ks @ self.alpha[name], var)

    def _test_diag(self, test: object, m: int) -> dict[str, Tensor]:
        parts: dict[str, list[Tensor]] = {k: [] for k in self.names}
        for i in range(0, m, self.block_size):
            sub = _rows(test, slice(i, min(i + self.block_size, m)))
            blk = self.kernel(sub, get=self.names, block_size=self.block_size)
            for k in self.names:
                parts[k].append(torch.diagonal(blk[k]).to(torch.float64))
        return {k: torch.cat(v) for k, v in parts.items()}

    def _predict_dense(self, test: object, variance: bool) -> dict[str, RegressionResult]:
        k_cross = self.kernel(test, self.train, get=self.names, block_size=self.block_size)
        m = next(iter(k_cross.values())).shape[0]
        diag = self._test_diag(test, m) if variance else {}
        out = {}
        for k in self.names:
            ks = k_cross[k].to(torch.float64)
            var = None
            if variance:
                v = torch.linalg.solve_triangular(self.chol[k], ks.T, upper=False)
                var = (diag[k] - (v * v).sum(0)).clamp_min(0.0)
            out[k] = self._result(k, ks @ self.alpha[k], var)
        return out

    def _predict_cg(self, test: object, variance: bool) -> dict[str, RegressionResult]:
        assert self._cg_fit is not None
        means = self._cg_fit.predict(test)
        means = {self.names[0]: means} if not isinstance(means, dict) else means
        out = {}
        var: dict[str, Tensor | None] = {k: None for k in self.names}
        if variance:  # (K + εI)⁻¹ K(U, u): one CG solve with a column per test point
            m = _n_of(test)
            diag = self._test_diag(test, m)
            k_cross = self.kernel(self.train, test, get=self.names, block_size=self.block_size)
            assert self.cg is not None
            for k in self.names:
                kc = k_cross[k].to(torch.float64)
                sol = solve_cg(
                    self.kernel,
                    self.train,
                    kc,
                    get=k,
                    eps=self.eps,
                    ridge=self.ridge,  # type: ignore[arg-type]
                    options=self.cg,
                )
                var[k] = (diag[k] - (kc * sol.alpha[k]).sum(0)).clamp_min(0.0)
        for k in self.names:
            mean = means[k] if means[k].dim() == 2 else means[k][:, None]
            out[k] = self._result(k, mean, var[k])
        return out


def fit_kernel_regression(
    kernel: Any,
    train: object = None,
    y: Tensor | None = None,
    *,
    get: Get = "ntk",
    eps: float = 1e-3,
    ridge: Ridge = "identity",
    solver: Solver = "auto",
    cg: CGOptions | None = None,
    jitter: float | Literal["auto"] | None = None,
    max_jitter: float = 1e-2,
    block_size: int = DEFAULT_BLOCK,
    memory_gb: float | None = None,
) -> KernelFit:
    """Solve (K + εI) α = Y once (Eq. 18).

    ``kernel``: an analytic kernel object with its training inputs ``train`` and targets ``y``
    (N,) or (N, T), ``get`` the kernels to solve ('nngp', 'ntk' or both, side by side); or a
    precomputed K(U, U) (N, N) as ``kernel`` with ``train=None`` (Cholesky only). ``solver``:
    'cholesky' (dense float64; not positive definite:
    [`NotPositiveDefiniteError`][hyperlab.kernels.regression.NotPositiveDefiniteError], or
    ``jitter`` as given / 'auto' growing tenfold from 1e-10·mean diag up to ``max_jitter``);
    'cg' ([`CGOptions`][hyperlab.kernels.iterative.CGOptions] in ``cg``); 'auto': Cholesky while
    the dense kernels and their
    factors take at most a quarter of ``memory_gb`` (default: the memory available now), else
    CG; ``KernelFit.reason`` says which and why.
    """
    _check_common(eps, ridge, solver)
    block = check_positive_int(block_size, "block_size")
    if torch.is_tensor(kernel):
        if train is not None:
            raise ValueError(
                "train: a precomputed K(U, U) takes no training inputs; pass "
                "fit_kernel_regression(K, y=y)"
            )
        if solver == "cg":
            raise ValueError(
                "solver: 'cg' needs an analytic kernel (a precomputed K is solved by Cholesky)"
            )
        return _fit_matrix(kernel, y, eps, ridge, jitter, max_jitter)
    if not callable(getattr(kernel, "tiles", None)):
        raise TypeError(
            "kernel: expected an analytic kernel (MLPKernel, HyperKernel) or a precomputed "
            f"K(U, U) tensor, got {type(kernel)}"
        )
    if y is None or train is None:
        raise ValueError("train, y: expected the training inputs and targets")
    names, single = parse_get(get)
    n = _n_of(train)
    picked, reason = _choose(solver, n, len(names), memory_gb)
    yt = _f64(y, "y_train")
    if yt.dim() not in (1, 2) or yt.shape[0] != n:
        raise ValueError(f"y_train: expected shape ({n},) or ({n}, T), got {tuple(yt.shape)}")
    fit = KernelFit(
        solver=picked,
        alpha={},
        kernel=kernel,
        train=train,
        eps=eps,
        ridge=ridge,
        reason=reason,
        block_size=block,
        squeeze=yt.dim() == 1,
        single=single,
    )
    if picked == "cg":
        return _solve_cg_into(fit, yt, names, cg or CGOptions(block_size=block))
    return _solve_dense_into(fit, yt, names, jitter, max_jitter)


def _check_common(eps: float, ridge: str, solver: str) -> None:
    if not eps >= 0:
        raise ValueError(f"eps: expected a non-negative float, got {eps!r}")
    if ridge not in ("identity", "relative"):
        raise ValueError(f"ridge: expected 'identity' or 'relative', got {ridge!r}")
    if solver not in ("cholesky", "cg", "auto"):
        raise ValueError(f"solver: expected 'cholesky', 'cg' or 'auto', got {solver!r}")


def _solve_cg_into(fit: KernelFit, y: Tensor, names: tuple[str, ...], opts: CGOptions) -> KernelFit:
    res = solve_cg(fit.kernel, fit.train, y, get=names, eps=fit.eps, ridge=fit.ridge, options=opts)  # type: ignore[arg-type]
    fit.alpha, fit.iterations, fit.residual = res.alpha, res.iterations, res.residual
    fit.history, fit.cg, fit._cg_fit, fit.cg_stats = res.history, opts, res, res.stats
    return fit


def _solve_dense_into(
    fit: KernelFit, y: Tensor, names: tuple[str, ...], jitter: float | str | None, max_jitter: float
) -> KernelFit:
    k_train = fit.kernel(fit.train, get=names, block_size=fit.block_size)
    k_train = k_train if isinstance(k_train, dict) else {names[0]: k_train}
    yy = y if y.dim() == 2 else y[:, None]
    used = 0.0
    for k in names:
        kk = k_train.pop(k).to(torch.float64)
        ridge: Ridge = "relative" if fit.ridge == "relative" else "identity"
        fit.chol[k], fit.alpha[k], j = _factor(
            kk, yy.to(kk.device), fit.eps, ridge, jitter, max_jitter
        )
        used = max(used, j)
    fit.jitter = used
    return fit


def _choose(solver: str, n: int, kernels: int, memory_gb: float | None) -> tuple[str, str]:
    """The solver to run and why: 'auto' takes Cholesky while the float64 kernels and their
    factors fit a quarter of the memory."""
    if solver != "auto":
        return solver, f"solver={solver!r} asked"
    need = 2 * 8 * n * n * kernels  # float64 K and its Cholesky factor, per kernel
    budget = (
        memory_gb * 2**30 if memory_gb is not None else (available_memory_bytes() or 8.0 * 2**30)
    ) / 4
    pick = "cholesky" if need <= budget else "cg"
    word = "within" if pick == "cholesky" else "over"
    return pick, (
        f"auto: the dense kernels and factors need {need / 2**30:.2f} GB, {word} a "
        f"quarter of the memory ({budget / 2**30:.2f} GB): {pick}"
    )


def _fit_matrix(
    k_train: Tensor,
    y: Tensor | None,
    eps: float,
    ridge: Ridge,
    jitter: float | str | None,
    max_jitter: float,
) -> KernelFit:
    k = _f64(k_train, "k_train")
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"k_train: expected a square (N, N) matrix, got {tuple(k.shape)}")
    if y is None:
        raise ValueError("y: expected the training targets")
    n = k.shape[0]
    yt = _f64(y, "y_train").to(k.device)
    if yt.dim() not in (1, 2) or yt.shape[0] != n:
        raise ValueError(f"y_train: expected shape ({n},) or ({n}, T), got {tuple(yt.shape)}")
    yy = yt if yt.dim() == 2 else yt[:, None]
    chol, alpha, used = _factor(k, yy, eps, ridge, jitter, max_jitter)
    return KernelFit(
        solver="cholesky",
        alpha={"k": alpha},
        chol={"k": chol},
        jitter=used,
        eps=eps,
        ridge=ridge,
        reason="a precomputed kernel: cholesky",
        squeeze=yt.dim() == 1,
        single=True,
    )


def kernel_regression(
    k_train: Tensor,
    y_train: Tensor,
    k_test_train: Tensor,
    *,
    eps: float = 1e-3,
    ridge: Ridge = "identity",
    k_test_diag: Tensor | None = None,
    jitter: float | Literal["auto"] | None = None,
    max_jitter: float = 1e-2,
) -> RegressionResult:
    """Eq. 18 on precomputed matrices in one call: ``fit_kernel_regression(k_train,
    y=y_train).predict(k_test_train, k_test_diag)``."""
    if not eps >= 0:
        raise ValueError(f"eps: expected a non-negative float, got {eps!r}")
    if ridge not in ("identity", "relative"):
        raise ValueError(f"ridge: expected 'identity' or 'relative', got {ridge!r}")
    fit = _fit_matrix(k_train, y_train, eps, ridge, jitter, max_jitter)
    return fit.predict(k_test_train, k_test_diag)
