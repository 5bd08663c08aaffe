"""Gauge fixing of generated weights (generating-networks paper, Sec. 3.2.2, Eq. 3).

A feed-forward network with positively homogeneous activations (ReLU, leaky-ReLU, identity) and
max-pooling computes the same function if filter j of layer l is multiplied by a > 0 and input
channel j of layer l+1 by 1/a (*scaling* symmetry), and its softmax is unchanged if the same
number is added to every logit bias (*logits' bias* symmetry).
[`gauge_fix`][hyperlab.generative.gauge.gauge_fix] picks one
representative per equivalence class, exactly as the released code does (notes C.3):

* for l = 1 … L−1 in order, every filter (incoming weights and bias, after the previous step's
  rescaling) is divided by ``s = sqrt((‖w‖² + b²)/n + eps)`` (n = filter size with the bias) and
  the matching input channel of layer l+1 is multiplied by s, so the mean square of every
  filter becomes 1;
* the logit biases get their mean subtracted (the paper's "sum of biases = 0"); the released
  code subtracts the *sum* instead, available as ``authors_sum_quirk=True``.

Layers are the layout's name prefixes (``conv0``, ``conv1``, ``fc0`` …) in layout order. The next
layer's weight ``(O', *in)`` is viewed as ``(O', O_l, -1)``, which is right because
[`ConvNet`][hyperlab.primary.ConvNet] flattens conv features channel-major (C, H, W); with TF's
(H, W, C) order the same symmetry acts on strided columns instead (same function class).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from hyperlab.primary import ParamLayout, Params, ParamSpec, Primary

__all__ = ["Layer", "filter_mean_squares", "gauge_fix", "layers_of", "random_symmetry"]

_HOMOGENEOUS = ("relu", "leaky_relu", "identity")


@dataclass(frozen=True)
class Layer:
    """One layer of a primary: its weight spec, optional bias spec, and number of filters."""

    name: str
    weight: ParamSpec
    bias: ParamSpec | None

    @property
    def n_filters(self) -> int:
        return self.weight.shape[0]

    @property
    def filter_size(self) -> int:
        """Numbers per filter: incoming weights plus the bias (the paper's n in Sec. 3.2.2)."""
        return self.weight.numel // self.n_filters + (1 if self.bias is not None else 0)

    @property
    def numel(self) -> int:
        return self.weight.numel + (self.bias.numel if self.bias is not None else 0)


def layers_of(layout: ParamLayout) -> list[Layer]:
    """Group a layout's specs into layers by name prefix (``conv0.weight`` + ``conv0.bias``)."""
    groups: dict[str, dict[str, ParamSpec]] = {}
    for s in layout.specs:
        prefix, _, _ = s.name.rpartition(".")
        groups.setdefault(prefix, {})[s.role] = s
    layers = []
    for prefix, roles in groups.items():
        w, b = roles.get("weight"), roles.get("bias")
        if w is None or len(w.shape) < 2:
            raise ValueError(f"layout: layer {prefix!r} needs a weight of shape (out, ...)")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(
                f"layout: bias {b.name!r} of shape {b.shape} does not match {w.shape[0]} filters"
            )
        layers.append(Layer(prefix, w, b))
    return layers


def _check_primary(primary: Primary) -> list[Layer]:
    if not isinstance(primary, Primary) or not primary.layered:
        raise TypeError(
            "primary: gauge fixing needs a layered primary (MLP, ConvNet: Primary.layered), got "
            f"{type(primary).__name__}"
        )
    if primary.activation not in _HOMOGENEOUS:
        raise ValueError(
            f"primary: the scaling symmetry needs a positively homogeneous activation "
            f"{_HOMOGENEOUS}, got {primary.activation!r}"
        )
    if primary.activate_output:
        raise ValueError("primary: activate_output=True has no logits' bias symmetry")
    layers = layers_of(primary.layout)
    for a, b in zip(layers[:-1], layers[1:], strict=True):
        fan = b.weight.numel // b.n_filters
        if fan % a.n_filters:
            raise ValueError(
                f"primary: layer {b.name!r} input size {fan} is not a multiple of the "
                f"{a.n_filters} filters of {a.name!r}"
            )
    return layers


def gauge_fix(
    primary: Primary,
    params: Params,
    *,
    authors_sum_quirk: bool = False,
    fix_logit_bias: bool = True,
    eps: float = 1e-8,
) -> dict[str, Tensor]:
    """Gauge-fixed copy of ``params`` (any leading batch dims); computes the same function.

    ``eps`` goes inside the square root of the scale (the released code's 1e-8), so units whose
    weights are all zero stay finite. ``authors_sum_quirk=True`` subtracts the sum of the logit
    biases (released code) instead of their mean (the paper's intent); both leave the softmax
    unchanged, only the mean removes the symmetry. Differentiable.
    """
    layers = _check_primary(primary)
    batch = primary.layout.batch_shape(params)
    nb = len(batch)
    out = dict(params)
    for layer, nxt in zip(layers[:-1], layers[1:], strict=True):
        w = out[layer.weight.name]
        o = layer.n_filters
        sq = w.reshape(*batch, o, -1).square().sum(-1)
        if layer.bias is not None:
            sq = sq + out[layer.bias.name].square()
        s = (sq / layer.filter_size + eps).sqrt()  # (*P, O)
        out[layer.weight.name] = w / s.reshape(*batch, o, *([1] * (w.dim() - nb - 1)))
        if layer.bias is not None:
            out[layer.bias.name] = out[layer.bias.name] / s
        wn = out[nxt.weight.name]
        view = wn.reshape(*batch, nxt.n_filters, o, -1) * s.reshape(*batch, 1, o, 1)
        out[nxt.weight.name] = view.reshape(wn.shape)
    last = layers[-1]
    if fix_logit_bias and last.bias is not None:
        b = out[last.bias.name]
        shift = b.sum(-1, keepdim=True) if authors_sum_quirk else b.mean(-1, keepdim=True)
        out[last.bias.name] = b - shift
    return {name: out[name] for name in primary.layout.names}


def random_symmetry(
    primary: Primary,
    params: Params,
    *,
    log_scale_std: float = 1.0,
    logit_shift_std: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Apply a random trivial symmetry (Sec. 3.2.2): positive per-filter rescaling of every
    layer but the last (unscaled in the next layer) and a common shift of the logit biases.

    The result computes the same logits up to a per-network constant; used to test that
    [`gauge_fix`][hyperlab.generative.gauge.gauge_fix] maps a whole equivalence class to one
    representative.
    """
    layers = _check_primary(primary)
    batch = primary.layout.batch_shape(params)
    nb = len(batch)
    ref = params[layers[0].weight.name]
    out = dict(params)
    for layer, nxt in zip(layers[:-1], layers[1:], strict=True):
        o = layer.n_filters
        a = torch.exp(
            log_scale_std * torch.randn(*batch, o, generator=generator, dtype=ref.dtype)
        ).to(ref.device)
        w = out[layer.weight.name]
        out[layer.weight.name] = w * a.reshape(*batch, o, *([1] * (w.dim() - nb - 1)))
        if layer.bias is not None:
            out[layer.bias.name] = out[layer.bias.name] * a
        wn = out[nxt.weight.name]
        view = wn.reshape(*batch, nxt.n_filters, o, -1) / a.reshape(*batch, 1, o, 1)
        out[nxt.weight.name] = view.reshape(wn.shape)
    last = layers[-1]
    if last.bias is not None:
        c = logit_shift_std * torch.randn(*batch, 1, generator=generator, dtype=ref.dtype)
        out[last.bias.name] = out[last.bias.name] + c.to(ref.device)
    return {name: out[name] for name in primary.layout.names}


def filter_mean_squares(primary: Primary, params: Mapping[str, Tensor]) -> list[Tensor]:
    """Per-filter mean square (weights and bias) of every layer but the last: (*P, O_l) each."""
    layers = _check_primary(primary)
    batch = primary.layout.batch_shape(params)
    res = []
    for layer in layers[:-1]:
        sq = params[layer.weight.name].reshape(*batch, layer.n_filters, -1).square().sum(-1)
        if layer.bias is not None:
            sq = sq + params[layer.bias.name].square()
        res.append(sq / layer.filter_size)
    return res
