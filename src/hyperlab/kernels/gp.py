"""Neural kernels with hyperparameters, differentiable: the NNGP/NTK of an MLP and of a
hypernetwork (Thm 2 NNGP, Thm 3 hyperkernel, both variants) as functions of their variances,
for Gaussian-process work: fitted by marginal likelihood
([`fit_hyperparameters`][hyperlab.kernels.gp.fit_hyperparameters]), or used
inside GPyTorch ([`hyperlab.kernels.gpytorch`][hyperlab.kernels.gpytorch]).

The recursions are those of [`hyperlab.kernels.analytic`][hyperlab.kernels.analytic] with every
fixed constant made a
hyperparameter: the input kernel's scale σ_in² (and its lengthscale for 'rbf'), each layer's
weight variance σ_w²ₗ (the squared gain: 2 for ReLU in the library's NTK parameterization) and
bias variance σ_b²ₗ (0 there):

    Σ¹ = σ_in² k_in(x, x') + σ_b²₀,          Θ¹ = Σ¹ (+ ntk_bias)
    Σˡ⁺¹ = σ_w²ₗ E[φφ](Σˡ) + σ_b²ₗ,          Θˡ⁺¹ = σ_w²ₗ E[φ'φ'](Σˡ) Θˡ + Σˡ⁺¹ (+ ntk_bias)

(``ntk_bias`` = 1 is the library's ``bias=True``: trained biases that start at zero). At the
defaults ([`MLPGPKernel.from_analytic`][hyperlab.kernels.gp.MLPGPKernel.from_analytic],
[`HyperGPKernel.from_analytic`][hyperlab.kernels.gp.HyperGPKernel.from_analytic]) the values
equal the analytic kernels' to float64 rounding (tested to 1e-10). Out-of-place torch ops
throughout, so autograd reaches every hyperparameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperlab.kernels.analytic import HyperKernel, MLPKernel
from hyperlab.kernels.tiles import parse_get

__all__ = [
    "HyperGPKernel",
    "HyperparameterFit",
    "MLPGPKernel",
    "fit_hyperparameters",
    "hyper_gp",
    "EXACT_MAX",
    "log_marginal_likelihood",
    "log_marginal_likelihood_stochastic",
    "mlp_gp",
]

InputKind = Literal["linear", "rbf"]


def _outer(a: Tensor, b: Tensor, pairwise: bool) -> Tensor:
    """a_i b_j for every pair (N, M), or a_i b_i row by row (``pairwise``: the diagonal)."""
    return a * b if pairwise else a[:, None] * b[None, :]


def _input(
    x1: Tensor, x2: Tensor, kind: str, scale: Tensor, lengthscale: Tensor, pairwise: bool = False
) -> Tensor:
    if pairwise:
        if kind == "linear":
            return scale * (x1 * x2).sum(-1) / x1.shape[-1]
        return scale * torch.exp(-0.5 * ((x1 - x2) ** 2).sum(-1) / lengthscale**2)
    if kind == "linear":
        return scale * (x1 @ x2.T) / x1.shape[-1]
    if x1.shape[-1] <= 8:  # exact differences, one feature at a time (as input_kernel)
        d2 = torch.zeros(x1.shape[0], x2.shape[0], dtype=x1.dtype, device=x1.device)
        for k in range(x1.shape[-1]):
            diff = x1[:, k, None] - x2[None, :, k]
            d2 = d2 + diff * diff
    else:
        d2 = (x1 * x1).sum(-1)[:, None] + (x2 * x2).sum(-1)[None, :] - 2.0 * (x1 @ x2.T)
    cap = -math.log(torch.finfo(d2.dtype).tiny) - 1.0
    return scale * torch.exp(
        torch.minimum(d2.clamp_min(0.0), cap * 2.0 * lengthscale**2) * (-0.5 / lengthscale**2)
    )


def _input_diag(x: Tensor, kind: str, scale: Tensor) -> Tensor:
    if kind == "linear":
        return scale * (x * x).sum(-1) / x.shape[-1]
    return scale * torch.ones(x.shape[0], dtype=x.dtype, device=x.device)


class _Kappa1(torch.autograd.Function):
    """J(ρ) = √(1-ρ²) + (π - arccos ρ) ρ, with its derivative π - arccos ρ: the singular parts
    of the two terms cancel, so the gradient is finite at ρ = ±1 (every diagonal entry)."""

    @staticmethod
    def forward(ctx, rho: Tensor) -> Tensor:
        pi_minus = math.pi - torch.arccos(rho)
        ctx.save_for_backward(pi_minus)
        return torch.sqrt((1 - rho * rho).clamp_min(0.0)) + pi_minus * rho

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (pi_minus,) = ctx.saved_tensors
        return grad * pi_minus


class _Kappa0(torch.autograd.Function):
    """π - arccos ρ, its derivative 1/√(1-ρ²) capped where ρ = ±1 (there ρ is 1 whatever the
    hyperparameters, so the cap multiplies a zero)."""

    @staticmethod
    def forward(ctx, rho: Tensor) -> Tensor:
        ctx.save_for_backward(rho)
        return math.pi - torch.arccos(rho)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (rho,) = ctx.saved_tensors
        tiny = torch.finfo(rho.dtype).eps
        return grad / torch.sqrt((1 - rho * rho).clamp_min(tiny))


def _arccos(cov: Tensor, q: Tensor, slope: float, wvar: Tensor) -> tuple[Tensor, Tensor]:
    """σ_w² E[φ(u)φ(v)] and σ_w² E[φ'(u)φ'(v)] of a (leaky-)ReLU (Cho & Saul)."""
    rho = (cov / q.clamp_min(torch.finfo(q.dtype).tiny)).clamp(-1.0, 1.0)
    pi_minus = _Kappa0.apply(rho)
    c1 = wvar * (1 - slope) ** 2 / (2 * math.pi)
    out = _Kappa1.apply(rho) * q * c1  # the order of analytic.py's ops: equal to rounding
    if slope:
        out = out + wvar * slope * cov
    return out, c1 * pi_minus + wvar * slope


def _diag_factor(slope: float) -> float:
    return slope + (1 - slope) ** 2 / 2


def mlp_gp(
    x1: Tensor,
    x2: Tensor,
    params: Mapping[str, Tensor],
    *,
    depth: int,
    slope: float = 0.0,
    kind: str = "linear",
    ntk_bias: float = 0.0,
    diag1: list[Tensor] | None = None,
    diag2: list[Tensor] | None = None,
    pairwise: bool = False,
) -> dict[str, Tensor]:
    """NNGP and NTK of a depth-``depth`` MLP between rows of x1 (N, d) and x2 (M, d).
    ``params``: 'input_scale' (), 'lengthscale' (), 'weight_var' (depth - 1,), 'bias_var'
    (depth,). Returns {'nngp', 'ntk'} (N, M), and the diagonals per layer under 'diag1'/'diag2'
    when not given (for a hypernetwork's f)."""
    w, b = params["weight_var"], params["bias_var"]
    k = _input(x1, x2, kind, params["input_scale"], params["lengthscale"], pairwise) + b[0]
    d1 = diag1 if diag1 is not None else mlp_diags(x1, params, depth, slope, kind)
    d2 = diag2 if diag2 is not None else mlp_diags(x2, params, depth, slope, kind)
    theta = k + ntk_bias
    for layer in range(1, depth):
        q = _outer(d1[layer - 1].sqrt(), d2[layer - 1].sqrt(), pairwise)  # as analytic.py
        e, edot = _arccos(k, q, slope, w[layer - 1])
        k = e + b[layer]
        theta = edot * theta + k + ntk_bias
    return {"nngp": k, "ntk": theta}


def mlp_diags(
    x: Tensor, params: Mapping[str, Tensor], depth: int, slope: float, kind: str
) -> list[Tensor]:
    """Σˡ(x, x) for l = 1..depth (per row)."""
    w, b = params["weight_var"], params["bias_var"]
    d = _input_diag(x, kind, params["input_scale"]) + b[0]
    out = [d]
    for layer in range(1, depth):
        d = w[layer - 1] * _diag_factor(slope) * d + b[layer]
        out.append(d)
    return out


def hyper_gp(
    u1: tuple[Tensor, Tensor],
    u2: tuple[Tensor, Tensor],
    f: Mapping[str, Tensor],
    g: Mapping[str, Tensor],
    *,
    f_depth: int,
    g_depth: int,
    f_slope: float = 0.0,
    g_slope: float = 0.0,
    x_kind: str = "linear",
    z_kind: str = "linear",
    f_ntk_bias: float = 0.0,
    variant: str = "s_weighted",
    pairwise: bool = False,
) -> dict[str, Tensor]:
    """The hypernetwork NNGP (Thm 2) and hyperkernel (Thm 3) of u = (x, z) rows, as
    [`HyperKernel`][hyperlab.kernels.analytic.HyperKernel] computes them, with f's hyperparameters
    ``f``
    (those of [`mlp_gp`][hyperlab.kernels.gp.mlp_gp]) and g's ``g``: 'input_scale', 'lengthscale'
    (of z),
    'weight_var' (g_depth - 1,), 'bias_var' (g_depth,): g's generated biases' variance per
    layer (1 with the library's ``g_bias=True``)."""
    (x1, z1), (x2, z2) = u1, u2
    fo = mlp_gp(
        x1, x2, f, depth=f_depth, slope=f_slope, kind=x_kind, ntk_bias=f_ntk_bias, pairwise=pairwise
    )
    s = fo["nngp"]
    s1 = mlp_diags(x1, f, f_depth, f_slope, x_kind)[-1]
    s2 = mlp_diags(x2, f, f_depth, f_slope, x_kind)[-1]
    w, gb = g["weight_var"], g["bias_var"]
    k = _input(z1, z2, z_kind, g["input_scale"], g["lengthscale"], pairwise)
    k1, k2 = _input_diag(z1, z_kind, g["input_scale"]), _input_diag(z2, z_kind, g["input_scale"])
    t = k + gb[0]
    for layer in range(1, g_depth):
        lam = (k + gb[layer - 1]) * s
        l1, l2 = s1 * (k1 + gb[layer - 1]), s2 * (k2 + gb[layer - 1])
        k, dot = _arccos(lam, _outer(l1.sqrt(), l2.sqrt(), pairwise), g_slope, w[layer - 1])
        k1 = w[layer - 1] * _diag_factor(g_slope) * l1
        k2 = w[layer - 1] * _diag_factor(g_slope) * l2
        if variant == "s_weighted":
            dot = dot * s
        t = dot * t + k + gb[layer]
    last = gb[g_depth - 1]
    nngp = s * (k + last) if variant == "s_weighted" else k + last
    return {"nngp": nngp, "ntk": fo["ntk"] * t}


class _Positive(nn.Module):
    """Positive hyperparameters stored as raw values, softplus-transformed."""

    def _add(self, name: str, value: Tensor | float, size: tuple[int, ...] = ()) -> None:
        v = torch.as_tensor(value, dtype=torch.float64).expand(size).clone()
        if not bool((v >= 0).all()) or not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name}: expected non-negative finite values, got {v.tolist()}")
        # a zero starts at 1e-18 (softplus never reaches 0): no effect on values, but a slow
        # start for learning it (start a bias variance to be fitted positive, e.g. 0.1)
        raw = torch.where(v > 20, v, torch.log(torch.expm1(v.clamp_min(1e-18))))
        self.register_parameter(f"raw_{name}", nn.Parameter(raw))

    def value(self, name: str) -> Tensor:
        return F.softplus(getattr(self, f"raw_{name}"))


class MLPGPKernel(_Positive):
    """The NNGP or NTK (``get``) of a depth-``depth`` (leaky-)ReLU MLP with trainable σ_in²,
    per-layer σ_w² and σ_b², and the input lengthscale (rbf), as a torch module: ``k(x1, x2)``.
    Defaults: the library's NTK parameterization (σ_w² = the squared gain, σ_b² = 0)."""

    def __init__(
        self,
        in_features: int,
        depth: int,
        *,
        get: str = "nngp",
        slope: float = 0.0,
        input_kernel: InputKind = "linear",
        weight_var: float | None = None,
        bias_var: float = 0.0,
        input_scale: float = 1.0,
        lengthscale: float = 1.0,
        ntk_bias: float = 0.0,
    ):
        super().__init__()
        names, single = parse_get(get)
        if not single:
            raise ValueError(f"get: expected 'nngp' or 'ntk' (one kernel), got {get!r}")
        if depth < 1 or in_features < 1:
            raise ValueError(
                f"depth, in_features: expected positive ints, got {depth}, {in_features}"
            )
        self.in_features, self.depth, self.get = in_features, depth, names[0]
        self.slope, self.kind, self.ntk_bias = float(slope), input_kernel, float(ntk_bias)
        wv = weight_var if weight_var is not None else 2.0 / (1 + slope**2)
        self._add("weight_var", wv, (max(depth - 1, 0),))
        self._add("bias_var", bias_var, (depth,))
        self._add("input_scale", input_scale)
        self._add("lengthscale", lengthscale)
        if not lengthscale > 0:
            raise ValueError(f"lengthscale: expected a positive float, got {lengthscale!r}")

    @classmethod
    def from_analytic(cls, kernel: MLPKernel, get: str = "nngp") -> MLPGPKernel:
        """The same kernel as ``kernel`` at its fixed constants, now trainable."""
        return cls(
            kernel.in_features,
            kernel.depth,
            get=get,
            slope=kernel.act.slope,
            input_kernel=kernel.input_kernel,
            weight_var=kernel.act.gain**2,
            lengthscale=kernel.lengthscale,
            ntk_bias=1.0 if kernel.bias else 0.0,
        )

    hyper_names = ("weight_var", "bias_var", "input_scale", "lengthscale")

    def values(self) -> dict[str, Tensor]:
        """Every hyperparameter's current value (positive)."""
        return {n: self.value(n) for n in self.hyper_names}

    def raw_of(self, name: str) -> nn.Parameter:
        """The raw (softplus⁻¹) parameter behind hyperparameter ``name``."""
        return getattr(self, f"raw_{name}")

    def evaluate(
        self, values: Mapping[str, Tensor], x1: Tensor, x2: Tensor, pairwise: bool = False
    ) -> Tensor:
        """The kernel between rows of x1 and x2 at hyperparameters ``values`` (``pairwise``:
        row i of x1 with row i of x2 only, e.g. the diagonal)."""
        v = {k: t.to(x1.dtype) for k, t in values.items()}
        out = mlp_gp(
            x1,
            x2,
            v,
            depth=self.depth,
            slope=self.slope,
            kind=self.kind,
            ntk_bias=self.ntk_bias,
            pairwise=pairwise,
        )
        return out[self.get]

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        return self.evaluate(self.values(), x1, x1 if x2 is None else x2)


class HyperGPKernel(nn.Module):
    """The hypernetwork NNGP or hyperkernel (``get``) of u = [x, z] (features concatenated,
    x first: ``x_features`` of them) with f's and g's hyperparameters trainable (``f`` and
    ``g``: ``_Positive`` holders). Defaults:
    [`HyperKernel`][hyperlab.kernels.analytic.HyperKernel]'s."""

    def __init__(
        self,
        x_features: int,
        z_features: int,
        f_depth: int,
        g_depth: int,
        *,
        get: str = "nngp",
        slope: float = 0.0,
        x_kernel: InputKind = "linear",
        z_kernel: InputKind = "linear",
        lengthscale: float = 1.0,
        f_ntk_bias: float = 0.0,
        g_bias_var: float = 0.0,
        variant: str = "s_weighted",
        weight_var: float | None = None,
    ):
        super().__init__()
        names, single = parse_get(get)
        if not single:
            raise ValueError(f"get: expected 'nngp' or 'ntk' (one kernel), got {get!r}")
        if variant not in ("s_weighted", "released"):
            raise ValueError(f"variant: expected 's_weighted' or 'released', got {variant!r}")
        self.x_features, self.z_features = x_features, z_features
        self.f_depth, self.g_depth, self.get, self.variant = f_depth, g_depth, names[0], variant
        self.slope, self.x_kind, self.z_kind = float(slope), x_kernel, z_kernel
        self.f_ntk_bias = float(f_ntk_bias)
        gain2 = weight_var if weight_var is not None else 2.0 / (1 + slope**2)
        self.f = _Positive()
        self.f._add("weight_var", gain2, (max(f_depth - 1, 0),))
        self.f._add("bias_var", 0.0, (f_depth,))
        self.f._add("input_scale", 1.0)
        self.f._add("lengthscale", 1.0)
        self.g = _Positive()
        self.g._add("weight_var", gain2, (max(g_depth - 1, 0),))
        self.g._add("bias_var", g_bias_var, (g_depth,))
        self.g._add("input_scale", 1.0)
        self.g._add("lengthscale", lengthscale)

    @classmethod
    def from_analytic(cls, kernel: HyperKernel, get: str = "nngp") -> HyperGPKernel:
        """The same kernel as ``kernel`` (f's and g's constants) at its fixed values, now
        trainable."""
        if kernel.f.act.slope != kernel.g_act.slope:
            raise ValueError("kernel: f and g with different activations are not supported here")
        return cls(
            kernel.x_features,
            kernel.z_features,
            kernel.f.depth,
            kernel.g_depth,
            get=get,
            slope=kernel.g_act.slope,
            x_kernel=kernel.f.input_kernel,
            z_kernel=kernel.z_kernel,
            lengthscale=kernel.lengthscale,
            f_ntk_bias=1.0 if kernel.f.bias else 0.0,
            g_bias_var=1.0 if kernel.g_bias else 0.0,
            variant=kernel.variant,
            weight_var=kernel.g_act.gain**2,
        )

    _each = ("weight_var", "bias_var", "input_scale", "lengthscale")
    hyper_names = tuple(
        f"{net}_{n}"
        for net in ("f", "g")
        for n in ("weight_var", "bias_var", "input_scale", "lengthscale")
    )

    def raw_of(self, name: str) -> nn.Parameter:
        """The raw (softplus⁻¹) parameter behind hyperparameter ``name`` (f_* or g_*)."""
        net, rest = name.split("_", 1)
        return getattr({"f": self.f, "g": self.g}[net], f"raw_{rest}")

    def values(self) -> dict[str, Tensor]:
        """Every hyperparameter's current value (positive): f_* and g_*."""
        nets = {"f": self.f, "g": self.g}
        return {f"{k}_{n}": nets[k].value(n) for k in ("f", "g") for n in self._each}

    def evaluate(
        self, values: Mapping[str, Tensor], u1: Tensor, u2: Tensor, pairwise: bool = False
    ) -> Tensor:
        """The kernel between rows of u1 and u2 ([x, z]) at hyperparameters ``values``
        (``pairwise``: row i with row i only)."""
        v = {k: t.to(u1.dtype) for k, t in values.items()}
        f = {n: v[f"f_{n}"] for n in self._each}
        g = {n: v[f"g_{n}"] for n in self._each}
        out = hyper_gp(
            self.split(u1),
            self.split(u2),
            f,
            g,
            f_depth=self.f_depth,
            g_depth=self.g_depth,
            f_slope=self.slope,
            g_slope=self.slope,
            x_kind=self.x_kind,
            z_kind=self.z_kind,
            f_ntk_bias=self.f_ntk_bias,
            variant=self.variant,
            pairwise=pairwise,
        )
        return out[self.get]

    def split(self, u: Tensor) -> tuple[Tensor, Tensor]:
        if u.shape[-1] != self.x_features + self.z_features:
            raise ValueError(
                f"u: expected {self.x_features + self.z_features} features "
                f"([x, z]), got {u.shape[-1]}"
            )
        return u[..., : self.x_features], u[..., self.x_features :]

    def forward(self, u1: Tensor, u2: Tensor | None = None) -> Tensor:
        return self.evaluate(self.values(), u1, u1 if u2 is None else u2)


def log_marginal_likelihood(k: Tensor, y: Tensor, noise: Tensor) -> Tensor:
    """log p(y | K, σ²) of a zero-mean GP, exact (Cholesky), summed over y's columns."""
    n = k.shape[0]
    a = k + noise * torch.eye(n, dtype=k.dtype, device=k.device)
    chol = torch.linalg.cholesky(a)
    yy = y if y.dim() == 2 else y[:, None]
    alpha = torch.cholesky_solve(yy, chol)
    logdet = 2 * torch.log(torch.diagonal(chol)).sum()
    t = yy.shape[1]
    return -0.5 * (yy * alpha).sum() - 0.5 * t * logdet - 0.5 * n * t * math.log(2 * math.pi)


def log_marginal_likelihood_stochastic(
    k: Tensor, y: Tensor, noise: Tensor, *, probes: int = 10, max_iter: int = 1000
) -> Tensor:
    """log p(y | K, σ²) as GPyTorch estimates it for large N: conjugate gradients for the
    quadratic term and stochastic Lanczos quadrature with ``probes`` random vectors for
    log det (linear_operator's ``inv_quad_logdet`` with Cholesky switched off; needs the
    ``gpytorch`` extra); differentiable in K and σ² like the exact one."""
    try:
        import linear_operator  # optional dependency (pip install hyperlab[gpytorch])
    except ImportError as err:
        raise ImportError(
            "method='stochastic' (used above EXACT_MAX points by method='auto') needs GPyTorch's "
            "linear_operator: pip install 'hyperlab[gpytorch]', or pass method='cholesky'"
        ) from err

    settings = linear_operator.settings

    n = k.shape[0]
    yy = y if y.dim() == 2 else y[:, None]
    a = linear_operator.to_linear_operator(k).add_diagonal(noise.expand(n))
    with (
        settings.max_cholesky_size(0),
        settings.num_trace_samples(probes),
        settings.max_cg_iterations(max_iter),
        settings.cg_tolerance(1e-4),
    ):
        inv_quad, logdet = a.inv_quad_logdet(inv_quad_rhs=yy, logdet=True, reduce_inv_quad=True)
    t = yy.shape[1]
    return -0.5 * inv_quad - 0.5 * t * logdet - 0.5 * n * t * math.log(2 * math.pi)


#: ``fit_hyperparameters(method='auto')`` uses the exact Cholesky up to this many points
EXACT_MAX = 3000


@dataclass
class HyperparameterFit:
    """What [`fit_hyperparameters`][hyperlab.kernels.gp.fit_hyperparameters] reached: the noise and
    every hyperparameter's value,
    the standard errors of the fitted ones and of the noise (from the observed information,
    the inverse Hessian of -log p at the optimum; NaN where it is singular: a direction the
    data do not determine), and the log marginal likelihood per step."""

    noise: float
    values: dict[str, list[float]]
    standard_errors: dict[str, list[float]] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    method: str = "cholesky"


def fit_hyperparameters(
    kernel: MLPGPKernel | HyperGPKernel,
    train: Tensor,
    y: Tensor,
    *,
    noise: float = 1e-3,
    learn_noise: bool = True,
    steps: int = 200,
    lr: float = 0.05,
    fixed: tuple[str, ...] = (),
    method: Literal["auto", "cholesky", "stochastic"] = "auto",
) -> HyperparameterFit:
    """Maximise the GP log marginal likelihood over ``kernel``'s hyperparameters (and the
    noise σ², starting at ``noise``, where ``learn_noise``) by autograd through the kernel:
    ``steps`` of Adam at ``lr`` on the softplus-raw values, exact Cholesky (for up to a few
    thousand points). ``kernel``: an [`MLPGPKernel`][hyperlab.kernels.gp.MLPGPKernel] or
    [`HyperGPKernel`][hyperlab.kernels.gp.HyperGPKernel] (changed
    in place); ``fixed``: hyperparameter names held at their values (a ReLU kernel is
    homogeneous: only the product of the scales is identified, so fix all but one).
    ``train`` (N, d), ``y`` (N,) or (N, T). ``method``: 'cholesky' (exact), 'stochastic'
    ([`log_marginal_likelihood_stochastic`][hyperlab.kernels.gp.log_marginal_likelihood_stochastic]:
    GPyTorch's CG and stochastic log-determinant estimate), 'auto': exact up to ``EXACT_MAX``
    points. Standard errors come from the exact Hessian: on a stochastic fit, from a random
    ``EXACT_MAX``-point subset (so wider than the full data's)."""
    if not noise > 0 or not math.isfinite(noise):
        raise ValueError(f"noise: expected a positive float, got {noise!r}")
    if steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    if method not in ("auto", "cholesky", "stochastic"):
        raise ValueError(f"method: expected 'auto', 'cholesky' or 'stochastic', got {method!r}")
    names = list(getattr(kernel, "hyper_names", ()))
    if not names:
        raise TypeError(f"kernel: expected an MLPGPKernel or HyperGPKernel, got {type(kernel)}")
    bad = [n for n in fixed if n not in names]
    if bad:
        raise ValueError(f"fixed: unknown hyperparameters {bad}; expected names from {names}")
    x = torch.as_tensor(train, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    if not torch.isfinite(x).all() or not torch.isfinite(yt).all():
        raise ValueError("train, y: contain NaN or infinite values")
    if yt.shape[0] != x.shape[0]:
        raise ValueError(
            f"y: expected {x.shape[0]} rows (one per training point), got {yt.shape[0]}"
        )
    free = [n for n in names if n not in fixed]
    raw_noise = nn.Parameter(torch.log(torch.expm1(torch.tensor(noise, dtype=torch.float64))))
    params = [kernel.raw_of(n) for n in free] + ([raw_noise] if learn_noise else [])
    opt = torch.optim.Adam(params, lr=lr)
    exact = method == "cholesky" or (method == "auto" and x.shape[0] <= EXACT_MAX)
    mll_of = log_marginal_likelihood if exact else log_marginal_likelihood_stochastic
    history = []
    for _ in range(steps):
        opt.zero_grad()
        mll = mll_of(kernel(x), yt, F.softplus(raw_noise))
        (-mll).backward()
        opt.step()
        history.append(float(mll.detach()))
    values = {n: t.detach().reshape(-1).tolist() for n, t in kernel.values().items()}
    fitted_noise = F.softplus(raw_noise.detach())
    sub = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:EXACT_MAX]
    sx, sy = (x, yt) if exact else (x[sub.to(x.device)], yt[sub.to(x.device)])
    ses = _standard_errors(kernel, sx, sy, free, fitted_noise, learn_noise)
    return HyperparameterFit(
        noise=float(fitted_noise),
        values=values,
        standard_errors=ses,
        history=history,
        method="cholesky" if exact else "stochastic",
    )


def _standard_errors(
    kernel: MLPGPKernel | HyperGPKernel,
    x: Tensor,
    y: Tensor,
    free: list[str],
    noise: Tensor,
    learn_noise: bool,
) -> dict[str, list[float]]:
    """√diag of the inverse Hessian of -log p over the fitted values (the observed
    information at the optimum)."""
    base = {n: t.detach() for n, t in kernel.values().items()}
    sizes = [base[n].numel() for n in free] + ([1] if learn_noise else [])
    theta0 = torch.cat(
        [base[n].reshape(-1) for n in free] + ([noise.reshape(1)] if learn_noise else [])
    )

    def neg_mll(theta: Tensor) -> Tensor:
        parts = theta.split(sizes)
        vals = dict(base)
        for n, p in zip(free, parts, strict=False):
            vals[n] = p.reshape(base[n].shape)
        nz = parts[-1][0] if learn_noise else noise
        return -log_marginal_likelihood(kernel.evaluate(vals, x, x), y, nz)

    hess = torch.autograd.functional.hessian(neg_mll, theta0)
    try:
        cov = torch.linalg.inv(0.5 * (hess + hess.T))
        se = torch.sqrt(torch.diagonal(cov).clamp_min(0.0))
        if not bool(torch.isfinite(se).all()) or bool((torch.diagonal(cov) < 0).any()):
            raise RuntimeError
    except RuntimeError:
        se = torch.full_like(theta0, math.nan)
    out, i = {}, 0
    for n, k in zip([*free, *(["noise"] if learn_noise else [])], sizes, strict=True):
        out[n] = se[i : i + k].tolist()
        i += k
    return out
