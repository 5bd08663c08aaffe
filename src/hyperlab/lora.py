"""Low-rank generation: a frozen base network whose chosen Linear / Conv layers get a rank-r
delta per weight set, W = W₀ + (α/r)·B·A (Hu et al. 2021), the A and B made by a hypernetwork
from a condition (a task embedding: Text-to-LoRA's HyperModulator, Charakorn et al. ICML 2025;
HypeLoRA).

* [`LoRAPrimary`][hyperlab.lora.LoRAPrimary] is the primary: its layout is every target layer's
``lora_A`` (r × fan-in)
  and ``lora_B`` (out × r), plus any base parameters named in ``generate`` (generated whole); the
  rest of the base is frozen and shared. A Linear computes x W₀ᵀ + s·(x Aᵀ) Bᵀ and a Conv
  conv(x, W₀) + s·conv₁ₓ₁(conv(x, A), B): B·A is never formed, except for a Linear whose weight
  its parent reads directly (``nn.MultiheadAttention.out_proj``), where W₀ + s·B·A is.
* [`LoRAHead`][hyperlab.lora.LoRAHead] is ``HyperNetwork(..., head="lora")``: one generator shared
by every target
  layer, fed [e; layer embedding; module-type embedding] (T2L's learned depth and type
  embeddings), with one A and one B output per module type; B's output starts at zero (so h is
  the base network at init) or, with [`LoRAHead.init_from`][hyperlab.lora.LoRAHead.init_from], at
  given adapter weights.
"""

from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperlab.modules import BNStats, ModulePrimary
from hyperlab.primary import ParamLayout, Params, ParamSpec, activation_fn

__all__ = ["LoRAHead", "LoRALayer", "LoRAPrimary"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LoRALayer:
    """One target layer: its name, kind, A and B shapes, and whether B·A is formed."""

    name: str
    kind: str  # "linear" | "conv"
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    fused: bool
    #: the module type (T2L's module-type embedding): layers of one type share an output head
    type_key: str


def _key(name: str) -> str:
    return name.replace(".", "__")


class LoRAPrimary(ModulePrimary):
    """The frozen ``base`` (``in_shape``: one sample's shape) with rank-``rank`` deltas on the
    Linear / Conv layers named by ``targets`` (module names or glob patterns), scaled by
    ``alpha / rank`` (``alpha`` default: ``rank``). ``generate`` (parameter names or patterns)
    adds base parameters generated whole (a classifier head, say). Load a pretrained base into
    ``base`` before wrapping; its other parameters are frozen (``requires_grad`` off) and
    shared. A [`ModulePrimary`][hyperlab.modules.ModulePrimary] underneath: BatchNorm per weight set
    and ``bn_stats`` work the same."""

    def __init__(
        self,
        base: nn.Module,
        in_shape: Sequence[int],
        *,
        targets: Sequence[str],
        rank: int,
        alpha: float | None = None,
        generate: Sequence[str] = (),
        bn_stats: BNStats = "shared",
        n_conditions: int | None = None,
    ):
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"rank: expected a positive int, got {rank!r}")
        super().__init__(
            base,
            in_shape,
            generate=list(generate),
            freeze=True,
            bn_stats=bn_stats,
            n_conditions=n_conditions,
        )
        self.rank = rank
        self.scale = float(alpha if alpha is not None else rank) / rank
        self.layers = self._layers(dict(base.named_modules()), list(targets), rank)
        specs = []
        for lay in self.layers:
            fan_in = math.prod(lay.a_shape[1:])
            a_std = 1.0 / math.sqrt(3 * fan_in)  # kaiming-uniform(a=√5), as PEFT inits A
            specs.append(
                ParamSpec(
                    f"{lay.name}.lora_A", lay.a_shape, "weight", fan_in, rank, mean=0.0, std=a_std
                )
            )
            specs.append(
                ParamSpec(
                    f"{lay.name}.lora_B",
                    lay.b_shape,
                    "weight",
                    rank,
                    lay.b_shape[0],
                    mean=0.0,
                    std=0.0,
                )
            )  # B = 0: h = base
        self.generated_whole = list(self.layout.names)
        self.layout = ParamLayout([*specs, *self.layout.specs])

    @staticmethod
    def _layers(modules: Mapping[str, nn.Module], targets: list[str], rank: int) -> list[LoRALayer]:
        names: list[str] = []
        for pat in targets:
            hit = [n for n in modules if n and fnmatch.fnmatchcase(n, pat)]
            if not hit:
                shown = ", ".join([n for n in modules if n][:8])
                raise ValueError(
                    f"targets: the pattern {pat!r} matches no module of base "
                    f"(its modules: {shown}, ...)"
                )
            names += [n for n in hit if n not in names]
        order = {n: i for i, n in enumerate(modules)}
        return [_layer(name, modules, rank) for name in sorted(names, key=order.__getitem__)]

    @property
    def base(self) -> nn.Module:
        return self.module

    def counts(self) -> dict[str, int]:
        """Scalars generated per weight set (LoRA A and B, whole tensors) and the frozen base."""
        lora = sum(math.prod(s.shape) for s in self.layout if ".lora_" in s.name)
        rest = super().counts()
        return {
            "lora": lora,
            "generated_whole": self.layout.numel - lora,
            "frozen_base": rest["shared_frozen"] + rest["shared_trainable"],
        }

    def zero_params(self, batch_shape: Sequence[int] = ()) -> dict[str, Tensor]:
        """θ that reproduces the base network: A drawn, B zero, whole tensors the base's."""
        named = dict(self.base.named_parameters())
        first = next(iter(named.values()))
        out = self.init_params(batch_shape, dtype=first.dtype, device=first.device)
        for n in self.generated_whole:
            out[n] = named[n].detach().expand(*batch_shape, *named[n].shape).clone()
        return out

    def _call(self, p: Params, x: Tensor, state: Mapping[str, Tensor]) -> Tensor:
        """One weight set: fused layers compute the low-rank path in their forward; the others
        get W₀ + s·B·A as their weight."""
        modules = dict(self.base.named_modules())
        weights: dict[str, Tensor] = {}
        patched = []
        for lay in self.layers:
            a, b = p[f"{lay.name}.lora_A"], p[f"{lay.name}.lora_B"]
            m = modules[lay.name]
            if lay.fused:
                fn = _lora_linear if lay.kind == "linear" else _lora_conv
                object.__setattr__(m, "forward", functools.partial(fn, m, a, b, self.scale))
                patched.append(m)
            else:
                weights[f"{lay.name}.weight"] = state[f"{lay.name}.weight"] + self.scale * (b @ a)
        whole = {n: p[n] for n in self.generated_whole}
        try:
            with _no_mha_fastpath():
                return torch.func.functional_call(self.base, {**state, **whole, **weights}, (x,))
        finally:
            for m in patched:
                del m.forward


def _layer(name: str, modules: Mapping[str, nn.Module], rank: int) -> LoRALayer:
    """The LoRA layout of one target layer, or a named error."""
    m = modules[name]
    parent = modules[name.rsplit(".", 1)[0] if "." in name else ""]
    a: tuple[int, ...]
    b: tuple[int, ...]
    if isinstance(m, nn.Linear):
        a, b = (rank, m.in_features), (m.out_features, rank)
        kind, fused = "linear", not isinstance(parent, nn.MultiheadAttention)
        size = min(m.in_features, m.out_features)
    elif isinstance(m, _CONVS):
        if m.groups != 1 or m.padding_mode != "zeros":
            raise ValueError(
                f"targets: {name} is a grouped or non-zero-padded conv; LoRA here "
                "takes groups=1, padding_mode='zeros'"
            )
        a, b = (rank, m.in_channels, *m.kernel_size), (m.out_channels, rank)
        kind, fused = "conv", True
        size = min(m.in_channels * math.prod(m.kernel_size), m.out_channels)
    else:
        raise ValueError(
            f"targets: {name} is a {type(m).__name__}; LoRA targets are nn.Linear "
            "or nn.Conv1d/2d/3d layers"
        )
    if rank > size:
        raise ValueError(
            f"rank: {rank} exceeds {name}'s largest rank {size} (min of its fan-in and outputs)"
        )
    leaf = name.rsplit(".", 1)[-1]
    key = f"{type(m).__name__}:{leaf if not leaf.isdigit() else ''}:{a}:{b}"
    return LoRALayer(name, kind, a, b, fused, key)


def _lora_linear(m: nn.Linear, a: Tensor, b: Tensor, s: float, x: Tensor) -> Tensor:
    return F.linear(x, m.weight, m.bias) + s * F.linear(F.linear(x, a), b)


def _lora_conv(m: nn.Module, a: Tensor, b: Tensor, s: float, x: Tensor) -> Tensor:
    assert isinstance(m, _CONVS)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[a.dim() - 2]
    st, pad, dil = m.stride, m.padding, m.dilation
    low = conv(x, a, None, st, pad, dil)  # (n, r, ...): the rank-r maps
    b_1x1 = b.reshape(*b.shape, *([1] * (a.dim() - 2)))
    base = conv(x, m.weight, m.bias, st, pad, dil)
    return base + s * conv(low, b_1x1)


@contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """nn.MultiheadAttention / TransformerEncoderLayer's fused fast path bypasses the Python
    forwards of their Linears; off while a LoRA forward runs."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    was = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(was)


class LoRAHead(nn.Module):
    """T2L-style generator of every LoRA tensor of a [`LoRAPrimary`][hyperlab.lora.LoRAPrimary]:
    for target layer ℓ
    of module type m, h = act(W [e; z_ℓ; u_m] + c) with learned layer (depth) embeddings z and
    type embeddings u, then A_ℓ = H_A^m h + a_ℓ and B_ℓ = H_B^m h + b_ℓ (one A and one B output
    per type, shared by its layers; a_ℓ, b_ℓ per-layer offsets, zero unless set from adapter
    weights). H_B starts at zero, so generated B is 0 and h the base network at init. Base
    tensors generated whole come from a linear head beside it."""

    def __init__(
        self,
        target: LoRAPrimary,
        in_features: int,
        *,
        hidden: int = 64,
        layer_dim: int = 16,
        type_dim: int = 16,
        activation: str = "relu",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if not isinstance(target, LoRAPrimary):
            raise TypeError(
                "head='lora': the target must be a hyperlab.lora.LoRAPrimary, got "
                f"{type(target).__name__}"
            )
        self.target_layers = list(target.layers)
        self.types = sorted({lay.type_key for lay in self.target_layers})
        depth: dict[str, int] = {}
        self.depth_of = []
        for lay in self.target_layers:  # a layer's depth: its index among layers of its type
            self.depth_of.append(depth.get(lay.type_key, 0))
            depth[lay.type_key] = self.depth_of[-1] + 1
        g = generator
        n_depth = max(depth.values())
        self.layer_emb = nn.Parameter(torch.randn(n_depth, layer_dim, generator=g))
        self.type_emb = nn.Parameter(torch.randn(len(self.types), type_dim, generator=g))
        fan = in_features + layer_dim + type_dim
        self.w_in = nn.Parameter(_uniform((hidden, fan), fan, g))
        self.b_in = nn.Parameter(torch.zeros(hidden))
        self.act = activation_fn(activation)
        by_type = {
            t: next(lay for lay in self.target_layers if lay.type_key == t) for t in self.types
        }
        self.head_a = nn.ParameterList(
            [
                nn.Parameter(_uniform((math.prod(by_type[t].a_shape), hidden), hidden, g))
                for t in self.types
            ]
        )
        self.head_b = nn.ParameterList(
            [nn.Parameter(torch.zeros(math.prod(by_type[t].b_shape), hidden)) for t in self.types]
        )
        self.offset_a = nn.ParameterList(
            [nn.Parameter(torch.zeros(math.prod(lay.a_shape))) for lay in self.target_layers]
        )
        self.offset_b = nn.ParameterList(
            [nn.Parameter(torch.zeros(math.prod(lay.b_shape))) for lay in self.target_layers]
        )
        whole = [target.layout[n] for n in target.generated_whole]
        self.whole_sizes = [s.numel for s in whole]
        self.whole = nn.Linear(in_features, sum(self.whole_sizes)) if whole else None
        self._a_std = [target.layout[f"{lay.name}.lora_A"].std for lay in self.target_layers]
        named = dict(target.base.named_parameters())
        init = [named[s.name].detach().reshape(-1) for s in whole]
        self._whole_init: Tensor
        self.register_buffer(
            "_whole_init", torch.cat(init) if init else torch.zeros(0), persistent=False
        )
        self.out_features = target.layout.numel

    def _hidden(self, e: Tensor) -> Tensor:
        """(..., L, hidden): the shared generator's hidden layer for every target layer."""
        types = torch.tensor(
            [self.types.index(lay.type_key) for lay in self.target_layers], device=e.device
        )
        depth = torch.tensor(self.depth_of, device=e.device)
        z = torch.cat([self.layer_emb[depth], self.type_emb[types]], -1)  # (L, dl + dt)
        w_e, w_z = self.w_in[:, : e.shape[-1]], self.w_in[:, e.shape[-1] :]
        return self.act((e @ w_e.T).unsqueeze(-2) + (z @ w_z.T + self.b_in))

    def forward(self, e: Tensor) -> Tensor:
        h = self._hidden(e)
        parts = []
        for i, lay in enumerate(self.target_layers):
            t = self.types.index(lay.type_key)
            hi = h[..., i, :]
            parts.append(hi @ self.head_a[t].T + self.offset_a[i])
            parts.append(hi @ self.head_b[t].T + self.offset_b[i])
        if self.whole is not None:
            parts.append(self.whole(e))
        return torch.cat(parts, -1)

    @torch.no_grad()
    def calibrate(self, e: Tensor) -> None:
        """Scale each type's A output so generated A has the LoRA init's std (PEFT's
        kaiming-uniform) on features ``e``; whole tensors start at the base's values (so h is
        the base network at init; their head's weights learn from zero)."""
        h = self._hidden(e[..., :64, :])
        for t in range(len(self.types)):
            idx = [i for i, lay in enumerate(self.target_layers) if self.types[t] == lay.type_key]
            out = h[..., idx, :] @ self.head_a[t].T
            rms = out.pow(2).mean().sqrt().clamp_min(1e-12)
            std = self._a_std[idx[0]] or 0.0
            self.head_a[t].mul_(std / rms)
        if self.whole is not None:  # the whole tensors start at the base's own values
            self.whole.weight.zero_()
            self.whole.bias.copy_(self._whole_init)

    @torch.no_grad()
    def init_from(self, adapters: Mapping[str, tuple[Tensor, Tensor]]) -> None:
        """Start every condition at given adapter weights: ``adapters[layer] = (A, B)``
        (shapes of ``lora_A``, ``lora_B``), the head's outputs zeroed for those layers' types."""
        names = [lay.name for lay in self.target_layers]
        for name, (a, b) in adapters.items():
            if name not in names:
                raise ValueError(f"adapters: {name!r} is not a LoRA target layer ({names})")
            i = names.index(name)
            lay = self.target_layers[i]
            if tuple(a.shape) != lay.a_shape or tuple(b.shape) != lay.b_shape:
                raise ValueError(
                    f"adapters[{name!r}]: expected A {lay.a_shape}, B "
                    f"{lay.b_shape}, got {tuple(a.shape)}, {tuple(b.shape)}"
                )
            self.offset_a[i].copy_(a.reshape(-1))
            self.offset_b[i].copy_(b.reshape(-1))
            self.head_a[self.types.index(lay.type_key)].zero_()


def _uniform(shape: tuple[int, int], fan_in: int, g: torch.Generator | None) -> Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return torch.rand(shape, generator=g).mul_(2 * bound).sub_(bound)
