"""Empirical (finite-width) kernels via ``torch.func``.

- [`empirical_ntk`][hyperlab.kernels.empirical.empirical_ntk]: Θ(x, x') = J(x) J(x')ᵀ of a
functional ``fn(params, *inputs)`` by the
  full Jacobian contraction or by NTK-vector products (vjp then jvp), in chunks.
- [`module_ntk`][hyperlab.kernels.empirical.module_ntk]: the same for any ``nn.Module`` (trainable
parameters only).
- [`hyper_ntk`][hyperlab.kernels.empirical.hyper_ntk]: the hyperkernel of a
[`HyperModel`][hyperlab.hypernet.HyperModel], either
  factorised as K^h = (∂g/∂θ) K^f (∂g/∂θ)ᵀ (Eq. 12) or by the direct Jacobian of h.
- [`taylor_terms`][hyperlab.kernels.empirical.taylor_terms]: K^(r)_ij = ⟨∇^(r) h_i, (∇h_j)^r⟩ of
Eq. 5 by nested jvps.

Kernels are (N, M) for scalar outputs and (N, M, O, O) for O outputs. Inputs are a tensor or a
tuple of tensors sharing the leading sample dimension. For hypernetworks u = (x, z) follows the
paper: x is f's input (``cond`` of ``HyperModel``), z is g's input (``HyperModel``'s ``x``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from hyperlab.hypernet import FullHead, HyperModel

__all__ = [
    "empirical_ntk",
    "module_ntk",
    "hyper_ntk",
    "taylor_terms",
    "trainable_params",
]

Inputs = Tensor | Sequence[Tensor]
Method = Literal["jacobian", "ntk_vp"]
DEFAULT_CHUNK = 64
CACHE_BYTES = 2 * 1024**3


def _as_tuple(inputs: Inputs, argument: str) -> tuple[Tensor, ...]:
    xs = (inputs,) if torch.is_tensor(inputs) else tuple(inputs)
    if not xs or not all(torch.is_tensor(t) for t in xs):
        raise TypeError(f"{argument}: expected a tensor or a tuple of tensors")
    n = xs[0].shape[0] if xs[0].dim() else None
    for k, t in enumerate(xs):
        if t.dim() == 0 or t.shape[0] != n:
            raise ValueError(
                f"{argument}[{k}]: every input needs the same leading sample dimension {n}, "
                f"got shape {tuple(t.shape)}"
            )
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{argument}[{k}]: contains NaN or infinite values")
    return xs


def _check_pair(x1: tuple[Tensor, ...], x2: tuple[Tensor, ...]) -> None:
    if len(x1) != len(x2):
        raise ValueError(f"x2: expected {len(x1)} input tensors like x1, got {len(x2)}")
    for k, (a, b) in enumerate(zip(x1, x2, strict=True)):
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(
                f"x2[{k}]: per-sample shape {tuple(b.shape[1:])} differs from x1's "
                f"{tuple(a.shape[1:])}"
            )


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _slice(xs: tuple[Tensor, ...], s: slice) -> tuple[Tensor, ...]:
    return tuple(t[s] for t in xs)


def _flat_out(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def wrapped(params, *xs):
        return fn(params, *xs).reshape(-1)

    return wrapped


def _contract(j1: dict[str, Tensor], j2: dict[str, Tensor]) -> Tensor:
    """Σ over parameter tensors of J1 J2ᵀ: (n, O, ...) × (m, O, ...) -> (n, m, O, O)."""
    out = None
    for k, a in j1.items():
        b = j2[k]
        t = torch.einsum("iap,jbp->ijab", a.flatten(2), b.flatten(2))
        out = t if out is None else out + t
    assert out is not None
    return out


def _finish(k: Tensor) -> Tensor:
    return k[..., 0, 0] if k.shape[-1] == 1 else k


def _pairwise(
    make: Callable[[slice, bool], dict[str, Tensor]],
    n: int,
    m: int,
    chunk: int,
    symmetric: bool,
    contract: Callable[[dict[str, Tensor], dict[str, Tensor]], Tensor],
) -> Tensor:
    """Fill an (n, m, O, O) kernel from per-chunk factors ``make(rows, is_left)``.

    Column factors are cached when they fit in ``CACHE_BYTES`` and recomputed otherwise.
    """
    rows, cols = _chunks(n, chunk), _chunks(m, chunk)
    cache: dict[int, dict[str, Tensor]] = {}
    cache_ok = True
    out: Tensor | None = None
    for i, r in enumerate(rows):
        left = make(r, True)
        for j, c in enumerate(cols):
            if symmetric and j < i:
                continue
            if symmetric and j == i:
                right = left
            elif j in cache:
                right = cache[j]
            else:
                right = make(c, False)
                if cache_ok:
                    size = sum(t.numel() * t.element_size() for t in right.values())
                    cache_ok = size * len(cols) <= CACHE_BYTES
                    if cache_ok:
                        cache[j] = right
            blk = contract(left, right)
            if out is None:
                out = blk.new_empty(n, m, *blk.shape[2:])
            out[r, c] = blk
            if symmetric and j != i:
                out[c, r] = blk.transpose(0, 1).transpose(2, 3)
    assert out is not None
    return out


def empirical_ntk(
    fn: Callable[..., Tensor],
    params: dict[str, Tensor],
    x1: Inputs,
    x2: Inputs | None = None,
    *,
    method: Method = "jacobian",
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """Empirical NTK Θ_ij = ⟨∂fn(x1_i)/∂params, ∂fn(x2_j)/∂params⟩ (Eq. 1 at finite width).

    ``fn(params, *inputs)`` maps one sample (inputs without the sample dimension) to an output
    of any shape (flattened to O). ``method='jacobian'`` contracts per-sample Jacobians
    (``vmap(jacrev)``); ``'ntk_vp'`` uses NTK-vector products, never holding a Jacobian.
    Samples are processed ``chunk_size`` at a time. Returns (N, M) or (N, M, O, O).
    """
    if method not in ("jacobian", "ntk_vp"):
        raise ValueError(f"method: expected 'jacobian' or 'ntk_vp', got {method!r}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    a = _as_tuple(x1, "x1")
    b = a if x2 is None else _as_tuple(x2, "x2")
    symmetric = x2 is None
    _check_pair(a, b)
    flat = _flat_out(fn)
    n, m = a[0].shape[0], b[0].shape[0]
    if method == "jacobian":
        jac = vmap(jacrev(flat), in_dims=(None, *[0] * len(a)))

        def make(s: slice, is_left: bool) -> dict[str, Tensor]:
            return jac(params, *_slice(a if is_left else b, s))

        return _finish(_pairwise(make, n, m, int(chunk_size), symmetric, _contract))

    def make_inputs(s: slice, is_left: bool) -> dict[str, Tensor]:
        return {str(k): t for k, t in enumerate(_slice(a if is_left else b, s))}

    def contract_vp(left: dict[str, Tensor], right: dict[str, Tensor]) -> Tensor:
        xl = tuple(left[str(k)] for k in range(len(left)))
        xr = tuple(right[str(k)] for k in range(len(right)))
        return _ntk_vp_block(flat, params, xl, xr)

    return _finish(_pairwise(make_inputs, n, m, int(chunk_size), symmetric, contract_vp))


def _ntk_vp_block(flat, params, xl: tuple[Tensor, ...], xr: tuple[Tensor, ...]) -> Tensor:
    """(n, m, O, O) block by NTK-vector products (the PyTorch NTK tutorial's second method)."""
    batched = vmap(flat, in_dims=(None, *[0] * len(xr)))

    def func_r(p):
        return batched(p, *xr)  # (m, O)

    def one_left(*x_single):
        out, vjp_fn = vjp(lambda p: flat(p, *x_single), params)

        def slice_(vec):
            (ct,) = vjp_fn(vec)
            return jvp(func_r, (params,), (ct,))[1]  # (m, O)

        basis = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
        return vmap(slice_)(basis)  # (O, m, O)

    blk = vmap(one_left)(*xl)  # (n, O, m, O)
    return blk.permute(0, 2, 1, 3)


def trainable_params(module: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(trainable parameters, frozen state: other parameters and buffers), detached."""
    train: dict[str, Tensor] = {}
    frozen: dict[str, Tensor] = {}
    for k, p in module.named_parameters():
        (train if p.requires_grad else frozen)[k] = p.detach()
    for k, b in module.named_buffers():
        frozen[k] = b.detach()
    if not train:
        raise ValueError("module: has no trainable parameters")
    return train, frozen


def module_ntk(
    module: nn.Module,
    x1: Inputs,
    x2: Inputs | None = None,
    *,
    method: Method = "jacobian",
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """Empirical NTK of any ``nn.Module`` w.r.t. its trainable parameters.

    ``x1`` is the module's input batch (or a tuple of its positional input batches, e.g.
    ``(x, cond)`` for a ``HyperModel``); each sample is run as a batch of one.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected an nn.Module, got {type(module)}")
    params, frozen = trainable_params(module)

    def fn(p, *xs):
        out = functional_call(module, {**frozen, **p}, tuple(t.unsqueeze(0) for t in xs))
        return out.squeeze(0)

    return empirical_ntk(fn, params, x1, x2, method=method, chunk_size=chunk_size)


def hyper_ntk(
    model: nn.Module,
    *,
    x: Tensor,
    z: Tensor,
    x2: Tensor | None = None,
    z2: Tensor | None = None,
    method: Literal["factorised", "jacobian", "ntk_vp"] = "factorised",
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """Empirical hyperkernel K^h(u, u') of a HyperModel h(u) = g(z; f(x)), u = (x, z).

    ``x`` (N, d_x) is f's input and ``z`` (N, *g.in_shape) g's; ``x2``, ``z2`` (both or
    neither) give the second argument u' (default: u, the symmetric kernel). Returns (N, M).

    ``'factorised'`` uses Eq. 12: with G(u) = ∂g(z; θ)/∂θ at θ = f(x) and K^f = J_f J_fᵀ,
    K^h = G(u) K^f(x, x') G(u')ᵀ. For f's linear head θ = s·A e(x) + c this is
    (s² e·e' + [c trained]) G·G' + ⟨J_e(x)ᵀ sAᵀG(u), J_e(x')ᵀ sAᵀG(u')⟩, so the N_g × d head
    never enters a Jacobian; other heads use vjps J_f(x)ᵀ G(u). ``'jacobian'``/``'ntk_vp'``
    differentiate h directly ([`module_ntk`][hyperlab.kernels.empirical.module_ntk]).
    """
    if not isinstance(model, HyperModel):
        raise TypeError(f"model: expected a HyperModel, got {type(model)}")
    if (x2 is None) != (z2 is None):
        raise ValueError("x2, z2: give both (the second argument u' = (x2, z2)) or neither")
    x1, z1 = x, z
    symmetric = x2 is None or z2 is None
    if x2 is None or z2 is None:
        x2, z2 = x1, z1
    if method in ("jacobian", "ntk_vp"):
        return module_ntk(
            model, (z1, x1), None if symmetric else (z2, x2), method=method, chunk_size=chunk_size
        )
    if method != "factorised":
        raise ValueError(f"method: expected 'factorised', 'jacobian' or 'ntk_vp', got {method!r}")
    f, g = model.f, model.g
    _check_hyper_inputs(model, ((x1, z1, ("x", "z")), (x2, z2, ("x2", "z2"))))
    layout = g.layout

    def g_single(theta: Tensor, z: Tensor) -> Tensor:
        return g(z.unsqueeze(0), layout.unflatten(theta)).reshape(-1)

    g_jac = vmap(jacrev(g_single))  # (c, O, N_g)
    sides = ((x1, z1), (x2, z2))
    parts = _full_head_parts if isinstance(f.head, FullHead) else _generic_head_parts
    make, contract = parts(f, g_jac, sides)
    n, m = x1.shape[0], x2.shape[0]
    return _finish(_pairwise(make, n, m, int(chunk_size), symmetric, contract))


def _check_hyper_inputs(model: HyperModel, sides) -> None:
    """Shapes of (x, z) and (x2, z2) against f's input and g's."""
    f, g = model.f, model.g
    for xa, za, (xn, zn) in sides:
        _as_tuple((xa, za), f"({xn}, {zn})")
        if xa.dim() != 2 or xa.shape[-1] != f.cond_features:
            raise ValueError(
                f"{xn} (f's input): expected shape (N, {f.cond_features}), got {tuple(xa.shape)}"
            )
        if tuple(za.shape[1:]) != tuple(g.in_shape):
            raise ValueError(
                f"{zn} (g's input): expected shape (N, {', '.join(map(str, g.in_shape))}), "
                f"got {tuple(za.shape)}"
            )


def _trunk_fn(f: nn.Module):
    def trunk_fn(p, x):
        return functional_call(f.trunk, p, (x.unsqueeze(0),)).squeeze(0)

    return trunk_fn


def _full_head_parts(f, g_jac, sides):
    """Eq. 12 with a linear head: per chunk e, G and the trunk's vjps of s·AᵀG; the pair
    kernel (s² e·e' + [c trained]) G·G' + the trunk's part."""
    head = f.head
    weight, scale = head.weight.detach(), head.scale
    bias_on = head.trains_bias
    trunk_params = {k: p.detach() for k, p in f.trunk.named_parameters() if p.requires_grad}
    trunk_fn = _trunk_fn(f)

    def make(s: slice, is_left: bool) -> dict[str, Tensor]:
        x, z = sides[0] if is_left else sides[1]
        x, z = x[s], z[s]
        with torch.no_grad():
            e = f.features(x)  # (c, d)
            theta = head(e)
        gj = g_jac(theta, z)  # (c, O, N_g)
        out = {"e": e, "G": gj}
        if trunk_params:
            r = scale * gj @ weight  # (c, O, d): s·Aᵀ G
            out.update(_trunk_vjps(trunk_fn, trunk_params, x, r))
        return out

    def contract(a: dict[str, Tensor], b: dict[str, Tensor]) -> Tensor:
        ee = scale**2 * (a["e"] @ b["e"].T) + (1.0 if bias_on else 0.0)
        k = ee[:, :, None, None] * torch.einsum("iak,jbk->ijab", a["G"], b["G"])
        rest = {n: t for n, t in a.items() if n not in ("e", "G")}
        if rest:
            k = k + _contract(rest, {n: b[n] for n in rest})
        return k

    return make, contract


def _generic_head_parts(f, g_jac, sides):
    """Any other head: vjps J_f(x)ᵀ G(u) through f as a whole."""
    f_params = {k: p.detach() for k, p in f.named_parameters() if p.requires_grad}
    trunk_fn = _trunk_fn(f)

    def f_flat(p, x):
        return functional_call(f.head, _sub(p, "head."), (trunk_fn(_sub(p, "trunk."), x),))

    def make(s: slice, is_left: bool) -> dict[str, Tensor]:
        x, z = sides[0] if is_left else sides[1]
        x, z = x[s], z[s]
        with torch.no_grad():
            theta = f.flat(x)
        gj = g_jac(theta, z)
        return _trunk_vjps(f_flat, f_params, x, gj)

    return make, _contract


def _sub(p: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}


def _trunk_vjps(fn, params: dict[str, Tensor], x: Tensor, cot: Tensor) -> dict[str, Tensor]:
    """J_fn(x_i)ᵀ cot_ia for each sample i and output a: dict of (c, O, *param_shape)."""

    def one(xi: Tensor, ci: Tensor) -> dict[str, Tensor]:
        _, vjp_fn = vjp(lambda p: fn(p, xi), params)  # type: ignore[misc]  # no has_aux
        return vmap(lambda v: vjp_fn(v)[0])(ci)

    return vmap(one)(x, cot)


def taylor_terms(
    module: nn.Module,
    inputs: Inputs | None = None,
    orders: Sequence[int] = (1, 2, 3, 4),
    *,
    targets: Inputs | None = None,
    x: Tensor | None = None,
    z: Tensor | None = None,
) -> dict[int, Tensor]:
    """K^(r)_ij = ⟨∇^(r) h_i, (∇h_j)^r⟩ of Eq. 5: the r-th derivative of h(u_i) along ∇h(u_j).

    Computed as d^r/dt^r h_i(w + t ∇h_j) at t = 0 by r nested jvps (never an r-tensor); the
    module's forward runs on the whole batch ``inputs`` (a tensor or a tuple of positional
    batches) and must return one scalar per sample. ``targets`` (default ``inputs``) give the
    directions ∇h_j. Returns {r: (N, M)}; K^(1) is the empirical NTK.

    For a HyperModel h(u) = g(z; f(x)), pass ``x=`` (f's input) and ``z=`` (g's input) as in
    [`hyper_ntk`][hyperlab.kernels.empirical.hyper_ntk] instead of ``inputs``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected an nn.Module, got {type(module)}")
    if (x is None) != (z is None) or (x is not None and inputs is not None):
        raise ValueError("inputs: give either inputs or both x= (f's input) and z= (g's input)")
    if x is not None and z is not None:
        inputs = (z, x)  # HyperModel.forward(z, x): g's input first
    if inputs is None:
        raise ValueError("inputs: expected the module's input batch (or x= and z=)")
    orders = sorted({int(r) for r in orders})
    if not orders or orders[0] < 1:
        raise ValueError(f"orders: expected positive ints, got {orders}")
    xs = _as_tuple(inputs, "inputs")
    ts = xs if targets is None else _as_tuple(targets, "targets")
    _check_pair(xs, ts)
    params, frozen = trainable_params(module)

    def h(p, batch):
        out = functional_call(module, {**frozen, **p}, batch)
        if out.dim() > 1 and math.prod(out.shape[1:]) != 1:
            raise ValueError(f"module: expected one scalar output per sample, got {out.shape}")
        return out.reshape(out.shape[0])

    def h_single(p, *x):
        return h(p, tuple(t.unsqueeze(0) for t in x))[0]

    grads = vmap(jacrev(h_single), in_dims=(None, *[0] * len(ts)))(params, *ts)  # (M, *shape)

    def derivs(v: dict[str, Tensor]) -> Tensor:
        fun = lambda p: h(p, xs)  # noqa: E731
        levels = []
        for _ in range(orders[-1]):
            fun = (lambda f0: lambda p: jvp(f0, (p,), (v,))[1])(fun)
            levels.append(fun)
        return torch.stack([levels[r - 1](params) for r in orders])  # (R, N)

    out = vmap(derivs)(grads)  # (M, R, N)
    return {r: out[:, k, :].T.contiguous() for k, r in enumerate(orders)}
