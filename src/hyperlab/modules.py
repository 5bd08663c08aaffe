"""Any ``nn.Module`` as a primary: [`ModulePrimary`][hyperlab.modules.ModulePrimary], via
``torch.func.functional_call``
and ``vmap`` (one call for every weight set, no loop).

What a researcher's own network needs beyond dense layers:

* **Norm layers per weight set.** The parameters of BatchNorm / LayerNorm / GroupNorm /
  InstanceNorm / RMSNorm are norm *scales* and *shifts* ([`ParamSpec`][hyperlab.primary.ParamSpec]
  roles): generated ones start at 1 and 0, the module's own init. In train mode a BatchNorm
  normalises each weight set's samples with that set's batch statistics, as running the module
  once per weight set would; its running statistics are this primary's buffers (so in
  ``state_dict`` and checkpoints), ``bn_stats='shared'`` by all weight sets (updated in order, as
  that loop would) or ``'per_condition'``: one set per condition id, as continual-learning
  hypernetworks keep per-task statistics.
* **Partial generation.** ``generate=["fc.*", "layer4.*"]`` (names or glob patterns) chooses the
  generated parameters; the others stay ordinary parameters of this primary, shared by every
  weight set, trainable or frozen (``freeze``).
* Every generated tensor's head target is the module's own init: its mean and standard
  deviation at wrap time (a SIREN layer's U(±√(6/n)/ω₀) included).

Nothing here changes the wrapped module: the shape probe runs in eval mode under ``no_grad``.
"""

from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperlab.primary import ParamLayout, Params, ParamSpec, Primary, Role

__all__ = ["NORM_TYPES", "ModulePrimary", "Sine", "siren_init_"]

#: the modules whose ``weight`` is a norm scale and ``bias`` a norm shift
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
BNStats = Literal["shared", "per_condition"]


def _key(name: str) -> str:
    return name.replace(".", "__")


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _match(names: Sequence[str], patterns: Sequence[str], argument: str) -> set[str]:
    chosen: set[str] = set()
    for pat in patterns:
        hit = {n for n in names if fnmatch.fnmatchcase(n, pat)}
        if not hit:
            shown = ", ".join(list(names)[:8]) + (", ..." if len(names) > 8 else "")
            raise ValueError(
                f"{argument}: the pattern {pat!r} matches no parameter of the "
                f"module (its parameters: {shown})"
            )
        chosen |= hit
    return chosen


class ModulePrimary(Primary):
    """Any ``nn.Module`` as a primary g(x; θ) (``in_shape``: one sample's shape).

    Parameter names are exactly ``module.named_parameters()``; ``generate`` (names or glob
    patterns; None: all) picks the generated ones, the layout; the rest are registered here as
    shared parameters (the module's own ``nn.Parameter`` objects), frozen where ``freeze``
    (True, or patterns) says. ``bn_stats`` chooses how BatchNorm running statistics are kept
    (see the module docstring); ``'per_condition'`` needs ``n_conditions`` and, in every call,
    ``condition_ids`` (one per weight set). Other buffers are shared by all weight sets.
    """

    def __init__(
        self,
        module: nn.Module,
        in_shape: Sequence[int],
        *,
        generate: Sequence[str] | None = None,
        freeze: bool | Sequence[str] = False,
        bn_stats: BNStats = "shared",
        n_conditions: int | None = None,
    ):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module: expected an nn.Module, got {type(module)}")
        if bn_stats not in ("shared", "per_condition"):
            raise ValueError(f"bn_stats: expected 'shared' or 'per_condition', got {bn_stats!r}")
        if bn_stats == "per_condition" and (n_conditions is None or n_conditions < 1):
            raise ValueError(
                "n_conditions: bn_stats='per_condition' needs the number of "
                f"conditions (a positive int), got {n_conditions!r}"
            )
        self._module = [module]  # a list hides it from nn.Module registration
        self.in_shape = tuple(int(s) for s in in_shape)
        self.bn_stats: BNStats = bn_stats
        self.n_conditions = n_conditions
        self._ids: Tensor | None = None
        named = dict(module.named_parameters())
        if not named:
            raise ValueError("module: has no parameters to generate")
        gen = set(named) if generate is None else _match(list(named), list(generate), "generate")
        self.layout = ParamLayout(self._specs(module, named, gen))
        self._setup_shared(named, gen, freeze)
        self._bn = {
            n: m
            for n, m in module.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        }
        self._setup_bn_buffers()
        self._bn_names = {
            _key(f"{p}.{b}")
            for p in self._bn
            for b in ("running_mean", "running_var", "num_batches_tracked")
        }
        self.out_shape = self._probe()

    # -- construction ---------------------------------------------------------------------

    @staticmethod
    def _specs(module: nn.Module, named: Mapping[str, Tensor], gen: set[str]) -> list[ParamSpec]:
        owners = dict(module.named_modules())
        specs, weight_fans = [], {}
        for name, p in named.items():
            prefix, leaf = name.rsplit(".", 1) if "." in name else ("", name)
            shape = tuple(p.shape)
            if len(shape) >= 2:
                weight_fans[prefix] = _fans(shape)
            if name not in gen:
                continue
            norm = isinstance(owners.get(prefix), NORM_TYPES)
            role: Role
            with torch.no_grad():  # the module's own init: the head's target
                mean = float(p.mean())
                std = float(p.std()) if p.numel() > 1 else 0.0
            if norm:
                role = "scale" if leaf == "weight" else "shift"
                fans = (max(1, p.numel()), max(1, p.numel()))
            elif len(shape) >= 2:
                role, fans = "weight", weight_fans[prefix]
            else:
                role, fans = "bias", weight_fans.get(prefix, (1, max(1, p.numel())))
            specs.append(
                ParamSpec(
                    name,
                    shape,
                    role,
                    fans[0],
                    fans[1],
                    mean=mean,
                    std=std,
                )
            )
        return specs

    def _setup_shared(
        self, named: Mapping[str, nn.Parameter], gen: set[str], freeze: bool | Sequence[str]
    ) -> None:
        shared = [n for n in named if n not in gen]
        frozen: set[str]
        if isinstance(freeze, bool):
            frozen = set(shared) if freeze else set()
        else:
            frozen = _match(shared, list(freeze), "freeze")
        self.shared = nn.ParameterDict({_key(n): named[n] for n in shared})
        self._shared_names = {_key(n): n for n in shared}
        for n in frozen:
            named[n].requires_grad_(False)

    def _setup_bn_buffers(self) -> None:
        for path, bn in self._bn.items():
            if not bn.track_running_stats:
                continue
            assert bn.running_mean is not None and bn.running_var is not None
            rows = () if self.bn_stats == "shared" else (int(self.n_conditions or 1),)
            mean = bn.running_mean.detach().clone().expand(*rows, -1).clone()
            var = bn.running_var.detach().clone().expand(*rows, -1).clone()
            count = torch.zeros(rows, dtype=torch.long)
            self.register_buffer(_key(f"{path}.running_mean"), mean)
            self.register_buffer(_key(f"{path}.running_var"), var)
            self.register_buffer(_key(f"{path}.num_batches_tracked"), count)

    def _probe(self) -> tuple[int, ...]:
        """The output shape from one zero input, in eval mode: no state changes (BatchNorm
        statistics included) and a 1×1 last feature map is fine."""
        module = self.module
        was = module.training
        try:
            module.eval()
            first = next(module.parameters())
            with torch.no_grad():
                probe = module(
                    torch.zeros(1, *self.in_shape, dtype=first.dtype, device=first.device)
                )
        except RuntimeError as err:
            dims = ", ".join(map(str, self.in_shape))
            raise ValueError(
                f"in_shape: the module rejects an input of shape (1, {dims}) (in_shape is one "
                f"sample's shape, without the batch dim): {str(err).splitlines()[0]}"
            ) from None
        finally:
            module.train(was)
        return tuple(probe.shape[1:])

    # -- public ---------------------------------------------------------------------------

    @property
    def module(self) -> nn.Module:
        return self._module[0]

    def module_params(self) -> dict[str, Tensor]:
        """The wrapped module's current generated parameters, detached (a valid unbatched θ)."""
        own = dict(self.module.named_parameters())
        return {n: own[n].detach().clone() for n in self.layout.names}

    def counts(self) -> dict[str, int]:
        """Scalars generated per weight set, shared (trainable), shared (frozen)."""
        trainable = sum(p.numel() for p in self.shared.values() if p.requires_grad)
        frozen = sum(p.numel() for p in self.shared.values() if not p.requires_grad)
        return {
            "generated": self.layout.numel,
            "shared_trainable": trainable,
            "shared_frozen": frozen,
        }

    def forward(
        self, x: Tensor, params: Params, *, condition_ids: Tensor | int | None = None
    ) -> Tensor:
        """g(x; θ) as [`Primary.forward`][hyperlab.primary.Primary.forward]; ``condition_ids`` (one
        per weight set, shape the
        params' batch shape) select BatchNorm statistics with ``bn_stats='per_condition'``."""
        self._ids = self._check_ids(condition_ids, params)
        try:
            return super().forward(x, params)
        finally:
            self._ids = None

    def _check_ids(self, ids: Tensor | int | None, params: Params) -> Tensor | None:
        if self.bn_stats != "per_condition" or not self._bn:
            return None
        if ids is None:
            raise ValueError(
                "condition_ids: bn_stats='per_condition' needs one condition id per "
                "weight set (e.g. the task of each)"
            )
        batch = self.layout.batch_shape(params)
        t = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        if t.numel() != max(1, math.prod(batch)):
            raise ValueError(
                f"condition_ids: expected {max(1, math.prod(batch))} ids (the params' "
                f"batch shape {tuple(batch)}), got {t.numel()}"
            )
        assert self.n_conditions is not None
        if int(t.min()) < 0 or int(t.max()) >= self.n_conditions:
            raise ValueError(f"condition_ids: expected ids in 0..{self.n_conditions - 1}")
        return t

    # -- forward --------------------------------------------------------------------------

    def _state(self, device: torch.device) -> dict[str, Tensor]:
        """The module's non-BatchNorm buffers and the shared parameters."""
        out = {
            n: b.to(device) for n, b in self.module.named_buffers() if _key(n) not in self._bn_names
        }
        out.update({self._shared_names[k]: p for k, p in self.shared.items()})
        return out

    def _stats_for(self, path: str, rows: Tensor | None) -> tuple[Tensor, Tensor]:
        mean = getattr(self, _key(f"{path}.running_mean"))
        var = getattr(self, _key(f"{path}.running_var"))
        if self.bn_stats == "per_condition":
            assert rows is not None
            return mean[rows], var[rows]
        return mean, var

    @contextmanager
    def _patched(
        self, collect: list, eval_stats: dict[str, tuple[Tensor, Tensor]]
    ) -> Iterator[None]:
        """Every BatchNorm of the module runs
        ``_bn_forward`` for the duration; the
        module's train/eval flag follows this primary's."""
        module, was = self.module, self.module.training
        module.train(self.training)
        for path, bn in self._bn.items():
            patched = functools.partial(
                self._bn_forward, path, bn, collect=collect, eval_stats=eval_stats
            )
            object.__setattr__(bn, "forward", patched)
        try:
            yield
        finally:
            for bn in self._bn.values():
                del bn.forward
            module.train(was)

    def _bn_forward(
        self,
        path: str,
        bn: nn.Module,
        x: Tensor,
        *,
        collect: list,
        eval_stats: Mapping[str, tuple[Tensor, Tensor]],
    ) -> Tensor:
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
        w, b = bn.weight, bn.bias
        batch_stats = self.training or not bn.track_running_stats
        if not batch_stats:
            mean, var = eval_stats[path]
            return F.batch_norm(x, mean, var, w, b, False, 0.0, bn.eps)
        if self.training and bn.track_running_stats:
            dims = [0, *range(2, x.dim())]
            n = x.numel() // x.shape[1]
            m = x.detach().mean(dims)
            v = x.detach().var(dims, correction=0) * (n / max(n - 1, 1))  # unbiased, as BN
            collect.append((path, m, v))
        return F.batch_norm(x, None, None, w, b, True, 0.0, bn.eps)

    def _forward_single(self, x: Tensor, params: Params) -> Tensor:
        return self._forward_batched(
            x.unsqueeze(0), {k: v.unsqueeze(0) for k, v in params.items()}
        ).squeeze(0)

    def _forward_batched(self, x: Tensor, params: Params) -> Tensor:
        state = self._state(x.device)
        ids = self._ids.to(x.device) if self._ids is not None else None
        paths = [p for p, bn in self._bn.items() if bn.track_running_stats]
        # eval: each weight set's statistics (per condition: gathered rows, vmapped)
        per_set = {p: self._stats_for(p, ids) for p in paths} if not self.training else {}
        batched = {p: s for p, s in per_set.items() if self.bn_stats == "per_condition"}
        fixed = {p: s for p, s in per_set.items() if self.bn_stats == "shared"}

        x, params, state = _autocast_inputs(x, params, state)

        def one(p: Params, xb: Tensor, stats: dict[str, tuple[Tensor, Tensor]]):
            collect: list = []
            with self._patched(collect, {**fixed, **stats}):
                out = self._call(p, xb, state)
            return out, {path: (m, v) for path, m, v in collect}

        out, seen = torch.func.vmap(one, randomness="different")(dict(params), x, batched)
        if self.training and seen:
            self._update_running(seen, ids, x.shape[0])
        return out

    def _call(self, p: Params, x: Tensor, state: Mapping[str, Tensor]) -> Tensor:
        """The module on one weight set's inputs (inside vmap): its generated tensors ``p``
        and the shared ``state``; subclasses change what a weight set means."""
        return torch.func.functional_call(self.module, {**state, **p}, (x,))

    @torch.no_grad()
    def _update_running(
        self, seen: Mapping[str, tuple[Tensor, Tensor]], ids: Tensor | None, b: int
    ) -> None:
        """Running statistics after the b weight sets' batches, as b calls of the module one
        after another would leave them (each condition's sets in order)."""
        ids = ids if ids is not None else torch.zeros(b, dtype=torch.long, device=self._dev())
        order = torch.sort(ids, stable=True).indices
        sorted_ids = ids[order]
        counts = torch.bincount(ids, minlength=int(ids.max()) + 1)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.empty_like(ids)
        position[order] = torch.arange(b, device=ids.device) - starts[sorted_ids]
        for path, (mu, var) in seen.items():
            bn = self._bn[path]
            buf_dtype = getattr(self, _key(f"{path}.running_mean")).dtype
            mu, var = mu.to(buf_dtype), var.to(buf_dtype)  # bfloat16 statistics under autocast
            mean_buf = getattr(self, _key(f"{path}.running_mean"))
            var_buf = getattr(self, _key(f"{path}.running_var"))
            nbt = getattr(self, _key(f"{path}.num_batches_tracked"))
            shared = self.bn_stats == "shared"
            rows_m = mean_buf.unsqueeze(0) if shared else mean_buf
            rows_v = var_buf.unsqueeze(0) if shared else var_buf
            rows_n = nbt.unsqueeze(0) if shared else nbt
            k = counts.to(mu.dtype)
            if bn.momentum is None:  # cumulative average over all batches seen
                n0 = rows_n[: len(counts)].to(mu.dtype)
                denom = (n0 + k).clamp_min(1).unsqueeze(1)
                new_m = (n0.unsqueeze(1) * rows_m[: len(counts)]).index_add(0, ids, mu) / denom
                new_v = (n0.unsqueeze(1) * rows_v[: len(counts)]).index_add(0, ids, var) / denom
            else:
                mom = float(bn.momentum)
                keep = (1 - mom) ** k  # (n_ids,)
                w = mom * (1 - mom) ** (counts[ids] - 1 - position).to(mu.dtype)  # (b,)
                new_m = keep.unsqueeze(1) * rows_m[: len(counts)]
                new_m = new_m.index_add(0, ids, w.unsqueeze(1) * mu)
                new_v = keep.unsqueeze(1) * rows_v[: len(counts)]
                new_v = new_v.index_add(0, ids, w.unsqueeze(1) * var)
            hit = counts > 0
            rows_m[: len(counts)][hit] = new_m[hit].to(rows_m.dtype)
            rows_v[: len(counts)][hit] = new_v[hit].to(rows_v.dtype)
            rows_n[: len(counts)] += counts

    def _dev(self) -> torch.device:
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


def _autocast_inputs(x: Tensor, params: Params, state: Mapping[str, Tensor]
                     ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:  # fmt: skip
    """Under autocast, x, the generated tensors and the shared ones in the autocast dtype:
    vmap's batched convolution takes its weights as they come, and a float32 input beside
    bfloat16 weights fails."""
    dev = x.device.type
    if not torch.is_autocast_enabled(dev):
        return x, dict(params), dict(state)
    dt = torch.get_autocast_dtype(dev)

    def cast(d: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {k: v.to(dt) if v.is_floating_point() else v for k, v in d.items()}

    return x.to(dt), cast(params), cast(state)


class Sine(nn.Module):
    """sin(ω₀ · x): SIREN's activation (Sitzmann et al. 2020)."""

    def __init__(self, omega0: float = 30.0):
        super().__init__()
        self.omega0 = float(omega0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega0 * x)

    def extra_repr(self) -> str:
        return f"omega0={self.omega0:g}"


@torch.no_grad()
def siren_init_(
    module: nn.Module, omega0: float = 30.0, *, generator: torch.Generator | None = None
) -> nn.Module:
    """SIREN's initialisation of the ``nn.Linear`` layers of ``module`` in order: the first
    U(−1/n, 1/n), the others U(−√(6/n)/ω₀, √(6/n)/ω₀), n the fan-in (biases keep PyTorch's
    default). Returns ``module``; a [`ModulePrimary`][hyperlab.modules.ModulePrimary] of it then
    targets these scales."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("module: has no nn.Linear layer to initialise")
    for i, lin in enumerate(linears):
        n = lin.in_features
        bound = 1.0 / n if i == 0 else math.sqrt(6.0 / n) / omega0
        lin.weight.copy_(torch.rand(lin.weight.shape, generator=generator) * 2 * bound - bound)
    return module
