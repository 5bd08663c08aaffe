"""Analytic infinite-width kernels in NTK parameterization (infinite-width paper, Eq. 2-3).

All kernels are computed in float64 (``dtype=torch.float32`` on request) and in tiles: the
(N, M) output is preallocated and filled block by block, so the working set is O(block² · depth)
besides the output itself. A symmetric call (second batch omitted) computes only the
upper-triangle tiles. ``kernel.tiles(...)`` gives the matrix without building it (a
[`Tiles`][hyperlab.kernels.tiles.Tiles], one block at a time): the matrix-free solver of
[`hyperlab.kernels.iterative`][hyperlab.kernels.iterative] works on it. Outputs are allocated on
the inputs' device.

Conventions (paper notation): a network with ``depth`` linear layers has ``depth - 1`` hidden
activation layers, no biases unless asked, weights N(0, 1), the forward scaled by 1/√fan_in and
every activation multiplied by its gain (√2 for ReLU; √(2/(1+α²)) for leaky-ReLU with slope α,
the gain of [`hyperlab.primary.MLP`][hyperlab.primary.MLP]). For a hypernetwork h(u) = g(z; f(x))
the input is
u = (x, z): x is f's input (``cond`` of
[`hyperlab.hypernet.HyperModel`][hyperlab.hypernet.HyperModel]), z is g's input
(``x`` of ``HyperModel``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from hyperlab.hypernet import FullHead, HyperModel
from hyperlab.kernels.tiles import (
    DEFAULT_BLOCK,
    KERNEL_NAMES,
    Get,
    Index,
    Tiles,
    check_dtype,
    check_positive_int,
    fill_tiles,
    parse_get,
)
from hyperlab.primary import LEAKY_SLOPE, MLP, activation_gain

__all__ = [
    "ArcCosine",
    "MLPKernel",
    "HyperKernel",
    "input_kernel",
    "KERNEL_NAMES",
]

SUPPORTED_ACTIVATIONS = ("relu", "leaky_relu")
InputKernel = Literal["linear", "rbf"]
Variant = Literal["s_weighted", "released"]
#: Largest number of distinct (x, x') pairs whose f-kernels HyperKernel precomputes (~270 MB).
MAX_DISTINCT_PAIRS = 2**24


@dataclass(frozen=True)
class ArcCosine:
    """The layer map of a (leaky-)ReLU layer with gain c, slope α (Cho & Saul arc-cosine kernels).

    For (u, v) ~ N(0, [[a, k], [k, b]]), q = √(ab), ρ = k/q, θ = arccos ρ:

    - E[φ(u)φ(v)] · c² = c² (α k + (1-α)² q κ₁(ρ) / 2),  κ₁(ρ) = (√(1-ρ²) + (π-θ) ρ)/π
    - E[φ'(u)φ'(v)] · c² = c² (α + (1-α)² κ₀(ρ) / 2),     κ₀(ρ) = (π-θ)/π

    using leaky(u) = α u + (1-α) relu(u) and E[u relu(v)] = k/2. With α = 0, c² = 2 these are
    the √2-normalised ReLU maps q·κ₁(ρ) and κ₀(ρ) (notes, M.1).
    """

    slope: float = 0.0
    gain: float = math.sqrt(2.0)

    @classmethod
    def for_activation(
        cls, activation: str, negative_slope: float = LEAKY_SLOPE, gain: float | None = None
    ) -> ArcCosine:
        if activation not in SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"activation: analytic kernels support {SUPPORTED_ACTIVATIONS}, got {activation!r}"
            )
        slope = 0.0 if activation == "relu" else float(negative_slope)
        if gain is None:
            gain = activation_gain(activation, negative_slope)
        return cls(slope, float(gain))

    @property
    def diag_factor(self) -> float:
        """Ratio of output to input variance: c² (α + (1-α)²/2) (1 for the library's gains)."""
        a = self.slope
        return self.gain**2 * (a + (1 - a) ** 2 / 2)

    def __call__(self, cov: Tensor, q: Tensor, need_dot: bool = True) -> tuple[Tensor, Tensor]:
        """(covariance after the layer, derivative covariance) for pre-activation ``cov``.

        ``q`` is √(cov(u, u)·cov(v, v)). Works in place on temporaries (few allocations).
        """
        a, c2 = self.slope, self.gain**2
        c1 = c2 * (1 - a) ** 2 / (2 * math.pi)
        rho = torch.div(cov, q.clamp_min(torch.finfo(q.dtype).tiny)).clamp_(-1.0, 1.0)
        if rho.dtype == torch.float32:  # float32 arccos is up to 35x slower (|ρ| ~ 1e-20):
            pi_minus = torch.arccos(rho.double()).neg_().add_(math.pi).float()  # float64 is not
        else:
            pi_minus = torch.arccos(rho).neg_().add_(math.pi)  # π - θ
        out = torch.mul(rho, rho).neg_().add_(1.0).clamp_min_(0.0).sqrt_()  # √(1 - ρ²)
        out.addcmul_(pi_minus, rho).mul_(q).mul_(c1)  # c²(1-α)²/2 · q κ₁(ρ)
        if a != 0.0:
            out.add_(cov, alpha=c2 * a)
        dot = pi_minus.mul_(c1).add_(c2 * a) if need_dot else pi_minus
        return out, dot


def input_kernel(
    x1: Tensor, x2: Tensor, kind: InputKernel = "linear", lengthscale: float = 1.0
) -> Tensor:
    """Input covariance: ``'linear'`` x·x'/d (Thm 2's Σ⁰, S⁰), or ``'rbf'``
    exp(-‖x - x'‖²/(2ℓ²)), the limit of infinitely many Fourier features (Remarks 2-3)."""
    if kind == "linear":
        return (x1 @ x2.T) / x1.shape[-1]
    if kind == "rbf":
        if x1.shape[-1] <= 8:  # exact differences: d² = 0 exactly for equal rows
            d2 = torch.zeros(x1.shape[0], x2.shape[0], dtype=x1.dtype, device=x1.device)
            for k in range(x1.shape[-1]):  # one 2-D pass per feature, no 3-D temporary
                diff = torch.sub(x1[:, k, None], x2[None, :, k])
                d2.addcmul_(diff, diff)
        else:
            d2 = (x1 * x1).sum(-1)[:, None] + (x2 * x2).sum(-1)[None, :] - 2.0 * (x1 @ x2.T)
        # capped above the underflow point: denormal results make exp (and every later pass
        # over them) many times slower, in float32 above all; the cap changes values < 1e-37
        cap = -math.log(torch.finfo(d2.dtype).tiny) - 1.0
        return torch.exp(d2.clamp_(0.0, cap * 2.0 * lengthscale**2).mul_(-0.5 / lengthscale**2))
    raise ValueError(f"input_kernel: expected 'linear' or 'rbf', got {kind!r}")


def _input_diag(x: Tensor, kind: InputKernel) -> Tensor:
    if kind == "linear":
        return (x * x).sum(-1) / x.shape[-1]
    return torch.ones(x.shape[0], dtype=x.dtype, device=x.device)


def _as_input(
    t: object, features: int, argument: str, dtype: torch.dtype = torch.float64
) -> Tensor:
    if not torch.is_tensor(t):
        try:
            t = torch.as_tensor(t)
        except Exception as err:  # noqa: BLE001
            raise TypeError(f"{argument}: expected a tensor, got {type(t)}") from err
    t = t.to(dtype)
    if t.dim() != 2 or t.shape[-1] != features:
        raise ValueError(f"{argument}: expected shape (N, {features}), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{argument}: contains NaN or infinite values")
    return t


def _finish(out: dict[str, Tensor], single: bool) -> Tensor | dict[str, Tensor]:
    return next(iter(out.values())) if single else out


class MLPKernel:
    """NNGP and NTK of a fully connected (leaky-)ReLU network in NTK parameterization.

    ``depth`` is the number of linear layers L (L - 1 hidden layers, linear readout). Recursion
    (notes M.1; Jacot et al.): Σ¹ = k_in(x, x'); Σ^{l+1} = map(Σ^l); Θ¹ = Σ¹ (+1 with biases);
    Θ^{l+1} = Σ^{l+1} (+1) + Σ̇^{l+1} Θ^l. With ``bias=True`` biases are zero at init (as in
    [`hyperlab.primary.init_params`][hyperlab.primary.init_params]) but trained, so they add to the
    NTK and not to the NNGP.
    """

    def __init__(
        self,
        in_features: int,
        depth: int,
        *,
        activation: str = "relu",
        negative_slope: float = LEAKY_SLOPE,
        gain: float | None = None,
        bias: bool = False,
        input_kernel: InputKernel = "linear",
        lengthscale: float = 1.0,
    ):
        self.in_features = check_positive_int(in_features, "in_features")
        self.depth = check_positive_int(depth, "depth")
        self.act = ArcCosine.for_activation(activation, negative_slope, gain)
        self.activation = activation
        self.bias = bool(bias)
        if input_kernel not in ("linear", "rbf"):
            raise ValueError(f"input_kernel: expected 'linear' or 'rbf', got {input_kernel!r}")
        if not lengthscale > 0:
            raise ValueError(f"lengthscale: expected a positive float, got {lengthscale!r}")
        self.input_kernel: InputKernel = input_kernel
        self.lengthscale = float(lengthscale)

    @classmethod
    def from_primary(cls, mlp: MLP, **kw) -> MLPKernel:
        """The kernel of a scalar-or-vector-output [`MLP`][hyperlab.primary.MLP] ('ntk')."""
        mlp = _check_mlp(mlp, "mlp")
        return cls(
            mlp.sizes[0],
            mlp.depth,
            activation=str(mlp.activation),
            negative_slope=_slope_of(mlp),
            bias=mlp.bias,
            **kw,
        )

    def __repr__(self) -> str:
        return (
            f"MLPKernel(in_features={self.in_features}, depth={self.depth}, "
            f"activation={self.activation!r}, bias={self.bias}, input_kernel={self.input_kernel!r})"
        )

    def _diags(self, x: Tensor) -> list[Tensor]:
        d = _input_diag(x, self.input_kernel)
        out = [d]
        for _ in range(1, self.depth):  # one factor a layer (as the GP kernels recurse)
            out.append(out[-1] * self.act.diag_factor)
        return out

    def _tile(
        self, x1: Tensor, x2: Tensor, d1: list[Tensor], d2: list[Tensor], names: tuple[str, ...]
    ) -> dict[str, Tensor]:
        need_ntk = "ntk" in names
        b = 1.0 if self.bias else 0.0
        k = input_kernel(x1, x2, self.input_kernel, self.lengthscale)
        theta = k + b
        for layer in range(1, self.depth):
            q = torch.outer(d1[layer - 1].sqrt(), d2[layer - 1].sqrt())
            k, dot = self.act(k, q, need_ntk)
            if need_ntk:
                theta = dot.mul_(theta).add_(k).add_(b)
        out = {"nngp": k}
        if need_ntk:
            out["ntk"] = theta
        return out

    def tiles(
        self,
        x1: Tensor,
        x2: Tensor | None = None,
        get: Get = ("nngp", "ntk"),
        *,
        dtype: torch.dtype = torch.float64,
    ) -> Tiles:
        """The kernel matrices between rows of ``x1`` (N, d) and ``x2`` (M, d; default ``x1``)
        as [`Tiles`][hyperlab.kernels.tiles.Tiles], computed block by block on demand."""
        names, _ = parse_get(get)
        dtype = check_dtype(dtype)
        a = _as_input(x1, self.in_features, "x1", dtype)
        symmetric = x2 is None
        b = a if symmetric else _as_input(x2, self.in_features, "x2", dtype).to(a.device)
        d1, d2 = self._diags(a), self._diags(b)

        def tile(r: Index, c: Index) -> dict[str, Tensor]:
            return self._tile(a[r], b[c], [d[r] for d in d1], [d[c] for d in d2], names)

        return Tiles(tile, (a.shape[0], b.shape[0]), names, symmetric, a.device, dtype)

    def __call__(
        self,
        x1: Tensor,
        x2: Tensor | None = None,
        get: Get = ("nngp", "ntk"),
        *,
        block_size: int = DEFAULT_BLOCK,
        dtype: torch.dtype = torch.float64,
    ) -> Tensor | dict[str, Tensor]:
        """Kernel matrices between rows of ``x1`` (N, d) and ``x2`` (M, d; default ``x1``).

        Returns a tensor for a single ``get`` name, else a dict name -> (N, M) tensor.
        """
        block = check_positive_int(block_size, "block_size")
        out = fill_tiles(self.tiles(x1, x2, get, dtype=dtype), block)
        return _finish(out, parse_get(get)[1])


class HyperKernel:
    """NNGP (Thm 2) and NTK, the hyperkernel (Thm 3), of h(u) = g(z; f(x)), u = (x, z).

    f has ``f_depth`` linear layers and infinitely many outputs, all of g's weights; g has
    ``g_depth`` linear layers (``g_depth - 1`` hidden), every weight generated by f. With
    S = S^L(x, x'), f's output NNGP, and Θ^f f's NTK
    ([`MLPKernel`][hyperlab.kernels.analytic.MLPKernel]), for l = 1..H-1:

        Λ^l = S · K^{l-1},  K^l = map(Λ^l),  Ġ^l = map'(Λ^l),  K⁰ = k_in(z, z')
        NNGP  Σ^h = S · K^{H-1}                                  (Eq. 8, readout included)
        Θ^g  = Σ_l K^{l-1} Π_{l' ≥ l} (S · Ġ^{l'}),   Θ^h = Θ^f · Θ^g      (Eq. 14)

    ``variant='s_weighted'`` (default) is this form, which the Monte Carlo tests confirm.
    ``variant='released'`` is the authors' released code (notes B.3, M.3): no S in the backward
    products of Θ^g and no final S in the NNGP; offered to compare Table 1 both ways. With
    ``g_bias=True`` g's generated biases add 1 to K^{l-1} in every layer; ``f_bias=True``
    adds f's trained zero-initialised biases to Θ^f.
    """

    def __init__(
        self,
        x_features: int,
        z_features: int,
        f_depth: int,
        g_depth: int,
        *,
        activation: str = "relu",
        f_activation: str | None = None,
        g_activation: str | None = None,
        negative_slope: float = LEAKY_SLOPE,
        f_bias: bool = False,
        g_bias: bool = False,
        x_kernel: InputKernel = "linear",
        z_kernel: InputKernel = "linear",
        lengthscale: float = 1.0,
        variant: Variant = "s_weighted",
    ):
        if variant not in ("s_weighted", "released"):
            raise ValueError(f"variant: expected 's_weighted' or 'released', got {variant!r}")
        if z_kernel not in ("linear", "rbf"):
            raise ValueError(f"z_kernel: expected 'linear' or 'rbf', got {z_kernel!r}")
        if not lengthscale > 0:
            raise ValueError(f"lengthscale: expected a positive float, got {lengthscale!r}")
        self.f = MLPKernel(
            x_features,
            f_depth,
            activation=f_activation or activation,
            negative_slope=negative_slope,
            bias=f_bias,
            input_kernel=x_kernel,
        )
        self.x_features = self.f.in_features
        self.z_features = check_positive_int(z_features, "z_features")
        self.g_depth = check_positive_int(g_depth, "g_depth")
        self.g_activation = g_activation or activation
        self.g_act = ArcCosine.for_activation(self.g_activation, negative_slope)
        self.g_bias = bool(g_bias)
        self.z_kernel: InputKernel = z_kernel
        self.lengthscale = float(lengthscale)
        self.variant: Variant = variant

    @classmethod
    def from_model(cls, model, **kw) -> HyperKernel:
        """The kernel of a [`HyperModel`][hyperlab.hypernet.HyperModel] with MLP f (full head) and
        g,
        both in NTK parameterization. ``kw`` sets z_kernel, lengthscale, variant, ..."""
        if not isinstance(model, HyperModel):
            raise TypeError(f"model: expected a HyperModel, got {type(model)}")
        f = model.f
        if f.parameterization != "ntk" or not isinstance(f.head, FullHead):
            raise ValueError("model: f must use parameterization='ntk' and head='full'")
        g = _check_mlp(model.g, "model.g")
        trunk = getattr(f.trunk, "primary", None)
        f_depth = 1 + (trunk.depth if trunk is not None else 0)
        f_act = trunk.activation if trunk is not None else "relu"
        f_bias = f.head.trains_bias
        if f_act not in SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"model.f: activation {f_act!r} not supported; expected {SUPPORTED_ACTIVATIONS}"
            )
        kw.setdefault("negative_slope", _slope_of(g))
        return cls(
            f.cond_features,
            g.sizes[0],
            f_depth,
            g.depth,
            f_activation=f_act,
            g_activation=str(g.activation),
            f_bias=f_bias,
            g_bias=g.bias,
            **kw,
        )

    def __repr__(self) -> str:
        return (
            f"HyperKernel(x_features={self.x_features}, z_features={self.z_features}, "
            f"f_depth={self.f.depth}, g_depth={self.g_depth}, z_kernel={self.z_kernel!r}, "
            f"variant={self.variant!r})"
        )

    def _g_diags(self, s_diag: Tensor, z: Tensor) -> list[Tensor]:
        """Diagonals Λ^l(u, u) for l = 1..H (per point)."""
        gb = 1.0 if self.g_bias else 0.0
        k = _input_diag(z, self.z_kernel)
        lams = []
        for _ in range(self.g_depth):
            lam = s_diag * (k + gb)
            lams.append(lam)
            k = lam * self.g_act.diag_factor
        return lams

    def _tile(
        self,
        f_out: dict[str, Tensor],
        zs: tuple[Tensor, Tensor],
        gd: tuple[list[Tensor], list[Tensor]],
        names: tuple[str, ...],
    ) -> dict[str, Tensor]:
        need_ntk = "ntk" in names
        s = f_out["nngp"]
        gb = 1.0 if self.g_bias else 0.0
        s_back = s if self.variant == "s_weighted" else None
        k = input_kernel(zs[0], zs[1], self.z_kernel, self.lengthscale)
        t = k + gb
        for layer in range(1, self.g_depth):
            lam = (k + gb).mul_(s) if gb else k.mul_(s)
            q = torch.outer(gd[0][layer - 1].sqrt(), gd[1][layer - 1].sqrt())
            k, dot = self.g_act(lam, q, need_ntk)
            if need_ntk:
                if s_back is not None:
                    dot.mul_(s_back)
                t = dot.mul_(t).add_(k).add_(gb)
        out = {}
        if "nngp" in names:
            out["nngp"] = s * (k + gb) if self.variant == "s_weighted" else k + gb
        if need_ntk:
            out["ntk"] = f_out["ntk"] * t
        return out

    def _inputs(self, u: object, argument: str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        x, z = _split_u(u, argument)
        x = _as_input(x, self.x_features, f"{argument}[0] (x, f's input)", dtype)
        z = _as_input(z, self.z_features, f"{argument}[1] (z, g's input)", dtype)
        if x.shape[0] != z.shape[0]:
            raise ValueError(
                f"{argument}: x and z must have the same number of rows, got {x.shape[0]} and "
                f"{z.shape[0]}"
            )
        return x, z

    def tiles(
        self,
        u1: tuple[Tensor, Tensor],
        u2: tuple[Tensor, Tensor] | None = None,
        get: Get = ("nngp", "ntk"),
        *,
        dtype: torch.dtype = torch.float64,
    ) -> Tiles:
        """The kernels between u1 = (x1 (N, d_x), z1 (N, d_z)) and u2 (default u1) as
        [`Tiles`][hyperlab.kernels.tiles.Tiles], computed block by block on demand.

        When x repeats (Table 1: every image with many pixels), f's kernels S and Θ^f are
        computed once on the distinct rows of x and gathered per tile: exact, and only g's
        recursion is paid per (x, z) pair.
        """
        names, _ = parse_get(get)
        dtype = check_dtype(dtype)
        x1, z1 = self._inputs(u1, "u1", dtype)
        symmetric = u2 is None
        x2, z2 = (x1, z1) if symmetric else self._inputs(u2, "u2", dtype)
        x2, z2 = x2.to(x1.device), z2.to(x1.device)
        fd1, fd2 = self.f._diags(x1), self.f._diags(x2)
        s1, s2 = fd1[-1], fd2[-1]  # S(x, x): f's output NNGP on the diagonal
        gd1, gd2 = self._g_diags(s1, z1), self._g_diags(s2, z2)
        f_names = ("nngp", "ntk") if "ntk" in names else ("nngp",)
        f_tile = self._distinct_f(x1, None if symmetric else x2, f_names)
        if f_tile is None:

            def f_tile(r: Index, c: Index) -> dict[str, Tensor]:
                return self.f._tile(x1[r], x2[c], [d[r] for d in fd1], [d[c] for d in fd2],
                                    f_names)  # fmt: skip

        def tile(r: Index, c: Index) -> dict[str, Tensor]:
            gd = ([d[r] for d in gd1], [d[c] for d in gd2])
            return self._tile(f_tile(r, c), (z1[r], z2[c]), gd, names)

        return Tiles(tile, (x1.shape[0], x2.shape[0]), names, symmetric, x1.device, dtype)

    def _distinct_f(
        self, x1: Tensor, x2: Tensor | None, f_names: tuple[str, ...]
    ) -> Callable[[Index, Index], dict[str, Tensor]] | None:
        """f's kernels on the distinct rows of x, gathered per tile; None when x barely
        repeats (fewer than 4× fewer distinct pairs) or the distinct kernels would be large."""
        u1, inv1 = torch.unique(x1, dim=0, return_inverse=True)
        u2, inv2 = (u1, inv1) if x2 is None else torch.unique(x2, dim=0, return_inverse=True)
        pairs = u1.shape[0] * u2.shape[0]
        if 4 * pairs > inv1.numel() * inv2.numel() or pairs > MAX_DISTINCT_PAIRS:
            return None
        f_k = self.f(u1, None if x2 is None else u2, get=f_names, dtype=x1.dtype)
        f_k = {f_names[0]: f_k} if torch.is_tensor(f_k) else f_k

        def f_tile(r: Index, c: Index) -> dict[str, Tensor]:
            # K[r, c] = E_r K_distinct E_cᵀ with one-hot E: exact, and two small GEMMs are
            # far faster than an elementwise gather of the block
            (ur, er), (uc, ec) = _one_hot(inv1[r], x1.dtype), _one_hot(inv2[c], x1.dtype)
            return {k: er @ v[ur][:, uc] @ ec.T for k, v in f_k.items()}

        return f_tile

    def __call__(
        self,
        u1: tuple[Tensor, Tensor],
        u2: tuple[Tensor, Tensor] | None = None,
        get: Get = ("nngp", "ntk"),
        *,
        block_size: int = DEFAULT_BLOCK,
        dtype: torch.dtype = torch.float64,
    ) -> Tensor | dict[str, Tensor]:
        """Kernels between u1 = (x1 (N, d_x), z1 (N, d_z)) and u2 (default u1): (N, M)."""
        block = check_positive_int(block_size, "block_size")
        out = fill_tiles(self.tiles(u1, u2, get, dtype=dtype), block)
        return _finish(out, parse_get(get)[1])


def _one_hot(index: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(distinct values of ``index``, one-hot (len(index), n_distinct) matrix selecting them)."""
    distinct, inverse = torch.unique(index, return_inverse=True)
    hot = torch.zeros(index.shape[0], distinct.shape[0], dtype=dtype, device=index.device)
    hot[torch.arange(index.shape[0], device=index.device), inverse] = 1.0
    return distinct, hot


def _split_u(u: object, argument: str) -> tuple[Tensor, Tensor]:
    if not isinstance(u, (tuple, list)) or len(u) != 2:
        raise TypeError(f"{argument}: expected a pair (x, z) of tensors, got {type(u)}")
    return u[0], u[1]


def _slope_of(mlp: MLP) -> float:
    if mlp.activation != "leaky_relu":
        return LEAKY_SLOPE
    # MLP keeps the slope only inside its gain: invert c² = 2 / (1 + α²).
    return math.sqrt(max(2.0 / mlp.gain**2 - 1.0, 0.0))


def _check_mlp(mlp: object, argument: str) -> MLP:
    """``mlp`` if it is an MLP the analytic kernels describe, else a named error."""
    if not isinstance(mlp, MLP):
        raise TypeError(f"{argument}: expected a hyperlab MLP, got {type(mlp)}")
    if mlp.parameterization != "ntk":
        raise ValueError(f"{argument}: analytic kernels need parameterization='ntk'")
    if mlp.activate_output:
        raise ValueError(f"{argument}: analytic kernels need a linear readout (activate_output)")
    if not all(mlp.hidden_activations):
        raise ValueError(f"{argument}: analytic kernels need the activation after every layer")
    return mlp
    if mlp.activation not in SUPPORTED_ACTIVATIONS:
        raise ValueError(
            f"{argument}: activation {mlp.activation!r} not supported; "
            f"expected {SUPPORTED_ACTIVATIONS}"
        )
