"""Hypernetworks f: I -> θ, the model h(x, I) = g(x; f(I)), and the embedding method q(x, e(I)).

Both families are built from the same parts: the trunks of f and e and the primary q are bound
[`MLP`][hyperlab.primary.MLP] primaries, so parameter counts match the modularity paper's
formulas (Sec. 5) by construction and every network shares one batched forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hyperlab.initialization import hyperfan_in_std, target_mean, target_std
from hyperlab.lora import LoRAHead
from hyperlab.primary import (
    MLP,
    Parameterization,
    Primary,
    activation_fn,
    check_dtype,
    check_finite,
    check_float,
    count_parameters,
)

__all__ = [
    "FullHead",
    "ChunkedHead",
    "HyperNetwork",
    "HyperModel",
    "EmbeddingModel",
    "count_parameters",
    "modularity_counts",
]


def _check_features(
    t: Tensor, features: int, argument: str, dtype: torch.dtype | None = None
) -> None:
    if not torch.is_tensor(t):
        raise TypeError(f"{argument}: expected a tensor, got {type(t)}")
    if t.dim() < 1 or t.shape[-1] != features:
        raise ValueError(f"{argument}: expected shape (..., {features}), got {tuple(t.shape)}")
    check_float(t, argument)
    if dtype is not None:
        check_dtype(t, dtype, argument)
    check_finite(t, argument)


def _param_dtype(module: nn.Module) -> torch.dtype | None:
    p = next(module.parameters(), None)
    return None if p is None else p.dtype


class FullHead(nn.Module):
    """Linear output layer producing every parameter of the primary: θ_s = A_s e + c_s.

    Usually the largest part of f (N_g × d_k weights). It is held as one weight block A_s and
    bias c_s per generated tensor s (``blocks``, the primary's layout order), so each tensor is
    one GEMM and a training step never concatenates an (N_g, d_k) gradient; ``weight`` and
    ``bias`` give the whole matrix and vector (copies).
    [`HyperModel`][hyperlab.hypernet.HyperModel] can contract the
    first-layer block with x directly instead of materialising per-sample weight matrices.
    """

    def __init__(
        self, in_features: int, blocks: int | Sequence[int], parameterization: Parameterization
    ):
        super().__init__()
        self.blocks = [int(blocks)] if isinstance(blocks, int) else [int(b) for b in blocks]
        self.in_features, self.out_features = in_features, sum(self.blocks)
        self.parameterization = parameterization
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.empty(n, in_features)) for n in self.blocks]
        )
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in self.blocks])
        self._register_load_state_dict_pre_hook(self._from_whole_matrix)

    def _from_whole_matrix(self, state: dict, prefix: str, *args) -> None:
        """Load state dicts saved before the head was blocked (``weight``, ``bias`` whole)."""
        for whole, blocks in (("weight", "weights"), ("bias", "biases")):
            t = state.pop(prefix + whole, None)
            if t is not None:
                for i, part in enumerate(t.split(self.blocks)):
                    state[f"{prefix}{blocks}.{i}"] = part

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.in_features) if self.parameterization == "ntk" else 1.0

    @property
    def weight(self) -> Tensor:
        """A, all blocks stacked: (N_g, d_k) (a copy)."""
        return torch.cat(list(self.weights))

    @property
    def bias(self) -> Tensor:
        """c, all blocks stacked: (N_g,) (a copy)."""
        return torch.cat(list(self.biases))

    @property
    def trains_bias(self) -> bool:
        return bool(self.biases[0].requires_grad)

    def set_weight(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Copy a whole (N_g, d_k) matrix (and (N_g,) bias) into the blocks."""
        with torch.no_grad():
            for blk, part in zip(self.weights, weight.split(self.blocks), strict=True):
                blk.copy_(part)
            if bias is not None:
                for blk, part in zip(self.biases, bias.split(self.blocks), strict=True):
                    blk.copy_(part)

    def reset(self, std: Tensor | None, generator: torch.Generator | None = None,
              mean: Tensor | None = None) -> None:  # fmt: skip
        """Per-row std (hyperfan-in) or, with ``std=None``, the NTK init N(0, 1); the bias is
        ``mean`` (what each generated coordinate starts at: 1 for a norm scale), else 0."""
        w = torch.empty(self.out_features, self.in_features, device=self.weights[0].device)
        w.normal_(generator=generator)  # drawn whole: the same numbers however it is blocked
        if std is not None:
            w.mul_(std.to(w).unsqueeze(1))
        b = torch.zeros(self.out_features, device=w.device) if mean is None else mean.to(w)
        self.set_weight(w, b)

    def parts(self, e: Tensor) -> list[Tensor]:
        """θ_s = scale·A_s e + c_s for every block: shapes (*P, n_s)."""
        s = self.scale
        return [
            F.linear(e, w if s == 1.0 else w * s, b)
            for w, b in zip(self.weights, self.biases, strict=True)
        ]

    def forward(self, e: Tensor) -> Tensor:
        parts = self.parts(e)
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)


#: Largest full head (parameters) a HyperNetwork builds unasked: 2**28, 1 GiB of float32 (a
#: ResNet-18 at d_k = 100 would need 1.1 G parameters); larger primaries take head="chunked".
MAX_FULL_HEAD = 1 << 28

#: floats of one block of the fused squared error (1 MiB: a block stays in a core's L2 cache)
_BLOCK_FLOATS = 1 << 18


class _LinearSquaredError(torch.autograd.Function):
    """Σ ‖h Wᵀ + b - t‖² with its gradients computed in the same pass, block of output columns
    by block, so the (…, k) output is never held whole: for the continual-learning regulariser
    over many tasks the (tasks × chunks × chunk) output is the size of every earlier task's
    weights, and writing and re-reading it dominated the step."""

    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, b: Tensor, t: Tensor) -> Tensor:
        rows = h.reshape(-1, h.shape[-1])
        k = w.shape[0]
        step = max(16, _BLOCK_FLOATS // max(1, rows.shape[0]))
        grads = any(ctx.needs_input_grad[:3])
        gh = torch.zeros_like(h) if grads else None
        gw = torch.empty_like(w) if grads else None
        gb = torch.empty_like(b) if grads else None
        total = h.new_zeros(())
        for lo in range(0, k, step):
            hi = min(k, lo + step)
            d = F.linear(h, w[lo:hi], b[lo:hi]).sub_(t[..., lo:hi])  # (..., hi - lo)
            flat = d.reshape(-1, hi - lo)
            total += torch.dot(flat.reshape(-1), flat.reshape(-1))
            if grads:
                assert gh is not None and gw is not None and gb is not None
                gw[lo:hi] = flat.T @ rows
                gb[lo:hi] = flat.sum(0)
                gh.add_(d @ w[lo:hi])
        if grads:
            ctx.save_for_backward(gh, gw, gb)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        gh, gw, gb = ctx.saved_tensors
        two = 2 * grad
        return gh * two, gw * two, gb * two, None


class ChunkedHead(nn.Module):
    """Shared-generator head: θ is cut into chunks, all made by one small MLP.

    Chunk c is G([e; z_c]) with a learned chunk embedding z_c (von Oswald et al. 2020), so the
    head has O(hidden·(d_k + chunk_size)) parameters instead of N_g·d_k. ``hidden`` is G's
    hidden width, or its widths (``[10, 10]``: the released continual-learning hypernetwork).
    The output is multiplied by a fixed per-coordinate scale so generated weights start at the
    primary's target scale ([`calibrate`][hyperlab.hypernet.ChunkedHead.calibrate];
    [`xavier_`][hyperlab.hypernet.ChunkedHead.xavier_] instead sets the released
    code's init with no scale).
    """

    def __init__(
        self,
        primary: Primary,
        in_features: int,
        chunk_size: int,
        *,
        embedding_dim: int = 8,
        hidden: int | Sequence[int] = 64,
        activation: str = "relu",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        widths = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
        if chunk_size <= 0 or embedding_dim <= 0 or not widths or min(widths) <= 0:
            raise ValueError(
                "chunk_size, embedding_dim, hidden: expected positive ints, got "
                f"{chunk_size}, {embedding_dim}, {hidden}"
            )
        zero = [s.name for s in primary.layout if s.role == "weight" and s.std == 0.0]
        if zero:
            raise ValueError(
                f"head: a chunked head scales each output to its tensor's init std, so it "
                f"cannot learn the zero-initialised {zero[0]}; use head='lora' (for a "
                "LoRAPrimary) or head='full'"
            )
        self.out_features = primary.layout.numel
        self.chunk_size = chunk_size
        self.n_chunks = -(-self.out_features // chunk_size)
        self.act = activation_fn(activation)
        g = generator

        def uniform(*shape: int, fan_in: int) -> nn.Parameter:
            b = 1.0 / math.sqrt(fan_in)
            return nn.Parameter(torch.rand(*shape, generator=g).mul_(2 * b).sub_(b))

        self.chunk_embeddings = nn.Parameter(torch.randn(self.n_chunks, embedding_dim, generator=g))
        fan = in_features + embedding_dim
        self.w_features = uniform(widths[0], in_features, fan_in=fan)
        self.w_chunk = uniform(widths[0], embedding_dim, fan_in=fan)
        self.b_hidden = nn.Parameter(torch.zeros(widths[0]))
        # further hidden layers of G (none for a single width)
        self.w_more = nn.ParameterList(
            [uniform(b, a, fan_in=a) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.b_more = nn.ParameterList([nn.Parameter(torch.zeros(b)) for b in widths[1:]])
        self.w_out = nn.Parameter(
            torch.randn(chunk_size, widths[-1], generator=g) / math.sqrt(widths[-1])
        )
        self.b_out = nn.Parameter(torch.zeros(chunk_size))
        self.out_scale: Tensor
        self.register_buffer("out_scale", target_std(primary))
        self.out_shift: Tensor  # where generated coordinates start (1 for a norm scale)
        self.register_buffer("out_shift", target_mean(primary))
        self.shifted = bool(self.out_shift.any())
        #: the output is used unscaled (after [`xavier_`][hyperlab.hypernet.ChunkedHead.xavier_],
        # which sets the scale to 1)
        self.unit_scale = False

    def hidden(self, e: Tensor) -> Tensor:
        """G's last hidden layer for every chunk: (..., C, hidden)."""
        a = e @ self.w_features.T  # (..., hidden): the e-part once per sample
        c = self.chunk_embeddings @ self.w_chunk.T + self.b_hidden  # (C, hidden): once per chunk
        h = self.act(a.unsqueeze(-2) + c)  # (..., C, hidden)
        for w, b in zip(self.w_more, self.b_more, strict=True):
            h = self.act(F.linear(h, w, b))
        return h

    def raw(self, e: Tensor) -> Tensor:
        """The generator's output before the fixed per-coordinate scale."""
        out = F.linear(self.hidden(e), self.w_out, self.b_out)
        return out.flatten(-2)[..., : self.out_features]

    def forward(self, e: Tensor) -> Tensor:
        out = self.raw(e)
        if not self.unit_scale:
            out = out * self.out_scale
        return out + self.out_shift if self.shifted else out

    def squared_error(self, e: Tensor, target: Tensor) -> Tensor:
        """Σ ‖f(e) - target‖² over every leading index, with ``target`` (..., N_g): the
        continual-learning regulariser's sum, computed chunk by chunk on views of ``target``
        with the output layer fused into the loss (its output is never held whole; the
        partial last chunk apart)."""
        h = self.hidden(e)
        k = self.chunk_size
        full, rem = divmod(self.out_features, k)
        if not self.unit_scale or self.shifted:  # a scaled or shifted head: the plain way
            return F.mse_loss(self(e), target, reduction="sum")
        total = e.new_zeros(())
        if full:
            tgt = target[..., : full * k].unflatten(-1, (full, k))
            total = total + _LinearSquaredError.apply(h[..., :full, :], self.w_out, self.b_out, tgt)
        if rem:
            last = (h[..., full, :], self.w_out[:rem], self.b_out[:rem], target[..., full * k :])
            total = total + _LinearSquaredError.apply(*last)
        return total

    @torch.no_grad()
    def calibrate(self, e: Tensor) -> None:
        """Rescale the generator so its raw output has unit second moment on features ``e``
        (at most 8 of them: each row is a whole parameter set, 11 M numbers for a ResNet-18)."""
        rms = self.raw(e[..., :8, :]).pow(2).mean().sqrt().clamp_min(1e-12)
        self.w_out.div_(rms)
        self.b_out.div_(rms)

    @torch.no_grad()
    def xavier_(self, generator: torch.Generator | None = None) -> None:
        """The released continual-learning code's init (chrhenning/hypercl,
        mnist/train_utils.py): Xavier-uniform weights (the first layer as one matrix over
        [e; z_c]), zero biases, N(0, 1) chunk embeddings, no output scale."""
        first = torch.cat([self.w_features, self.w_chunk], 1)
        mats = [first, *self.w_more, self.w_out]
        for m in mats:
            bound = math.sqrt(6.0 / (m.shape[0] + m.shape[1]))
            m.copy_(torch.rand(m.shape, generator=generator).mul_(2 * bound).sub_(bound))
        d = self.w_features.shape[1]
        self.w_features.copy_(first[:, :d])
        self.w_chunk.copy_(first[:, d:])
        for b in [self.b_hidden, *self.b_more, self.b_out]:
            b.zero_()
        self.chunk_embeddings.copy_(torch.randn(self.chunk_embeddings.shape, generator=generator))
        self.out_scale.fill_(1.0)
        self.unit_scale = True


class HyperNetwork(nn.Module):
    """f: I -> θ, an MLP whose output is a full parameter set of ``target`` (a primary).

    ``hidden`` are the widths of f's hidden layers, so f has ``len(hidden) + 1`` linear layers
    (the paper's k). ``head='full'`` is a linear layer onto all N_g parameters; ``'chunked'``
    shares one generator across chunks; ``'lora'`` (for a
    [`hyperlab.lora.LoRAPrimary`][hyperlab.lora.LoRAPrimary])
    generates low-rank deltas T2L-style ([`hyperlab.lora.LoRAHead`][hyperlab.lora.LoRAHead]).
    ``init='hyperfan'`` (standard parameterization only) scales the head so that generated
    weights start with the variance the primary expects, measured on ``init_cond`` (default:
    standard-normal conditions).
    """

    def __init__(
        self,
        target: Primary,
        cond_features: int,
        hidden: Sequence[int] = (100,),
        *,
        activation: str = "relu",
        bias: bool = True,
        head: Literal["full", "chunked", "lora"] = "full",
        chunk_size: int = 1024,
        chunk_embedding_dim: int = 8,
        chunk_hidden: int | Sequence[int] = 64,
        parameterization: Parameterization = "standard",
        init: Literal["hyperfan", "standard"] = "hyperfan",
        init_cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        max_head_params: int = MAX_FULL_HEAD,
        lora_hidden: int = 64,
    ):
        super().__init__()
        if not isinstance(target, Primary):
            raise TypeError(f"target: expected a hyperlab Primary, got {type(target)}")
        if cond_features <= 0:
            raise ValueError(f"cond_features: expected a positive int, got {cond_features}")
        if head not in ("full", "chunked", "lora"):
            raise ValueError(f"head: expected 'full', 'chunked' or 'lora', got {head!r}")
        if init not in ("hyperfan", "standard"):
            raise ValueError(f"init: expected 'hyperfan' or 'standard', got {init!r}")
        self.target = target
        self.cond_features = cond_features
        self.parameterization = parameterization
        self.init = init
        hidden = [int(h) for h in hidden]
        if hidden:
            trunk = MLP(
                [cond_features, *hidden],
                activation,
                bias=bias,
                parameterization=parameterization,
                activate_output=True,
            )
            trunk.validate_inputs = False  # cond is checked where it enters (features, flat)
            self.trunk: nn.Module = trunk.bind(generator=generator)
        else:
            self.trunk = nn.Identity()
        d_k = hidden[-1] if hidden else cond_features
        self.head: FullHead | ChunkedHead | LoRAHead
        if head == "full" and d_k * target.layout.numel > max_head_params:
            raise ValueError(
                f"head: a full head onto {target.layout.numel:,} generated weights from "
                f"{d_k} features would hold {d_k * target.layout.numel:,} parameters (more than "
                f"max_head_params = {max_head_params:,}); use head='chunked' (one small "
                "generator for every chunk) or a low-rank primary (hyperlab.lora), or raise "
                "max_head_params"
            )
        if head == "full":
            self.head = FullHead(d_k, [spec.numel for spec in target.layout], parameterization)
            if not bias:
                self.head.biases.requires_grad_(False)
        elif head == "lora":
            self.head = LoRAHead(target, d_k, hidden=lora_hidden, activation=activation,  # type: ignore[arg-type]
                                 generator=generator)  # fmt: skip
        else:
            self.head = ChunkedHead(
                target,
                d_k,
                chunk_size,
                embedding_dim=chunk_embedding_dim,
                hidden=chunk_hidden,
                activation=activation,
                generator=generator,
            )
        self.reset_head(init_cond, generator=generator)

    def features(self, cond: Tensor) -> Tensor:
        """f's last hidden layer (the input of the head)."""
        _check_features(cond, self.cond_features, "cond", _param_dtype(self.head))
        return self.trunk(cond)

    @torch.no_grad()
    def reset_head(
        self, init_cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> None:
        """(Re)initialise the head (hyperfan-in, calibrated on ``init_cond``, or NTK N(0,1))."""
        if init_cond is None:
            init_cond = torch.randn(256, self.cond_features, generator=generator)
        _check_features(init_cond, self.cond_features, "init_cond")
        dev = next(self.parameters()).device
        e = self.features(init_cond.to(dev, _param_dtype(self.head)))
        if isinstance(self.head, FullHead):
            mean = target_mean(self.target)
            if self.parameterization == "ntk":
                self.head.reset(None, generator=generator, mean=mean)
            elif self.init == "standard":  # nn.Linear's default, for comparison with hyperfan
                bound = 1.0 / math.sqrt(self.head.in_features)
                w, b = self.head.weight, self.head.bias
                w.uniform_(-bound, bound, generator=generator)
                if self.head.trains_bias:
                    b.uniform_(-bound, bound, generator=generator)
                else:  # bias=False: the (frozen) head biases stay zero
                    b.zero_()
                self.head.set_weight(w, b + mean.to(b))
            else:
                m2 = float(e.pow(2).mean())
                std = hyperfan_in_std(self.target, self.head.in_features, m2)
                self.head.reset(std, generator=generator, mean=mean)
        else:
            self.head.calibrate(e)

    def flat(self, cond: Tensor) -> Tensor:
        """θ as one vector per condition: shape (*P, N_g)."""
        _check_features(cond, self.cond_features, "cond", _param_dtype(self.head))
        return self.head(self.trunk(cond))

    def forward(self, cond: Tensor) -> dict[str, Tensor]:
        """θ = f(I) as a dict in the target's layout, with batch shape ``cond.shape[:-1]``."""
        if not isinstance(self.head, FullHead):
            return self.target.layout.unflatten(self.flat(cond))
        _check_features(cond, self.cond_features, "cond", _param_dtype(self.head))
        parts = self.head.parts(self.trunk(cond))  # one block per tensor: no split
        batch = cond.shape[:-1]
        return {
            spec.name: part.reshape(*batch, *spec.shape)
            for spec, part in zip(self.target.layout, parts, strict=True)
        }


#: Smallest first-layer weight of g for which HyperModel fuses by default: the break-even of
#: ``benchmarks/fuse_threshold.py`` (one thread, batch 200, g: d-10-1; ms/step fused vs
#: materialised, other core busy: d = 20: 5.8 vs 4.7, 50: 6.6 vs 5.1, 100: 7.6 vs 7.4,
#: 300: 10.3 vs 19.2).
FUSE_MIN_NUMEL = 1_000


class HyperModel(nn.Module):
    """h(x, I) = g(x; f(I)) with per-sample weights run as one batched call.

    ``x`` has shape (*P, *G, *in_shape) for ``cond`` of shape (*P, d_I): every condition gets its
    own weights, applied to its group G of inputs. With ``dedupe=True`` weights are generated once
    per distinct condition (rows of ``cond`` that are equal), for batches where many x share one I.
    For an MLP primary with a full head and one x per condition, the first layer of g can be
    contracted with x straight from the head's weights, never materialising the per-sample
    first-layer matrices: ``fused=True`` always, ``False`` never, ``None`` (default) when g's
    first weight has at least ``FUSE_MIN_NUMEL`` entries (below
    that the extra kernels
    cost more than the materialised weights: ``benchmarks/fuse_threshold.py``).
    """

    def __init__(self, primary: Primary, cond_features: int, hidden: Sequence[int] = (100,), **kw):
        super().__init__()
        self.f = HyperNetwork(primary, cond_features, hidden, **kw)
        self.fused: bool | None = None

    @property
    def g(self) -> Primary:
        return self.f.target

    def weights(self, cond: Tensor) -> dict[str, Tensor]:
        """The generated parameters θ_I = f(I)."""
        return self.f(cond)

    def _can_fuse(self, x: Tensor, cond: Tensor) -> bool:
        head = self.f.head
        if self.fused is False or not (self.g.fused_head and isinstance(head, FullHead)):
            return False
        return x.dim() == cond.dim() and (self.fused or head.blocks[0] >= FUSE_MIN_NUMEL)

    def forward(self, x: Tensor, cond: Tensor, *, dedupe: bool = False,
                condition_ids: Tensor | None = None) -> Tensor:  # fmt: skip
        """h(x, I); ``condition_ids`` (one per condition) pass to a primary that keeps
        per-condition state ([`hyperlab.modules.ModulePrimary`][hyperlab.modules.ModulePrimary] with
        ``bn_stats='per_condition'``)."""
        if condition_ids is not None:
            return self.g(x, self.f(cond), condition_ids=condition_ids)
        dtype = _param_dtype(self.f.head)
        _check_features(cond, self.f.cond_features, "cond", dtype)
        if torch.is_tensor(x) and dtype is not None:
            check_dtype(x, dtype, "x")
        nb = cond.dim() - 1
        if tuple(x.shape[:nb]) != tuple(cond.shape[:-1]):
            raise ValueError(
                f"x: leading dims {tuple(x.shape[:nb])} must equal cond's batch shape "
                f"{tuple(cond.shape[:-1])}"
            )
        if dedupe:
            flat = cond.reshape(-1, cond.shape[-1])
            uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
            theta = self.f.flat(uniq)[inverse].reshape(*cond.shape[:-1], -1)
            return self.g(x, self.g.layout.unflatten(theta))
        if self._can_fuse(x, cond):
            return self._forward_fused(x, cond)
        return self.g(x, self.f(cond))

    def _forward_fused(self, x: Tensor, cond: Tensor) -> Tensor:
        head: FullHead = self.f.head  # type: ignore[assignment]
        e = self.f.trunk(cond)  # cond was checked in forward
        return self.g.forward_fused_head(x, e, list(head.weights), list(head.biases), head.scale)


class EmbeddingModel(nn.Module):
    """The embedding method h(x, I) = q(x, e(I)) (modularity paper, Sec. 2).

    e is an MLP cond_features → hidden… → embedding_dim (``len(e_hidden) + 1`` layers, no output
    activation); q is an MLP on the concatenation [x; e(I)]. ``bias`` is for e and q, or for e
    alone when ``q_bias`` is given.
    """

    def __init__(
        self,
        x_features: int,
        cond_features: int,
        embedding_dim: int,
        e_hidden: Sequence[int] = (100,),
        q_hidden: Sequence[int] = (10,),
        out_features: int = 1,
        *,
        activation: str = "relu",
        bias: bool = True,
        q_bias: bool | None = None,
        parameterization: Parameterization = "standard",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        for name, v in (
            ("x_features", x_features),
            ("cond_features", cond_features),
            ("embedding_dim", embedding_dim),
            ("out_features", out_features),
        ):
            if int(v) <= 0:
                raise ValueError(f"{name}: expected a positive int, got {v}")
        self.x_features, self.cond_features = x_features, cond_features
        q_bias = bias if q_bias is None else q_bias
        e = MLP([cond_features, *e_hidden, embedding_dim], activation, bias=bias,
                parameterization=parameterization)  # fmt: skip
        q = MLP([x_features + embedding_dim, *q_hidden, out_features], activation, bias=q_bias,
                parameterization=parameterization)  # fmt: skip
        e.validate_inputs = q.validate_inputs = False  # x and cond are checked in forward
        self.e = e.bind(generator=generator)
        self.q = q.bind(generator=generator)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        _check_features(cond, self.cond_features, "cond", _param_dtype(self))
        _check_features(x, self.x_features, "x", _param_dtype(self))
        nb = cond.dim() - 1
        if tuple(x.shape[:nb]) != tuple(cond.shape[:-1]):
            raise ValueError(
                f"x: leading dims {tuple(x.shape[:nb])} must equal cond's batch shape "
                f"{tuple(cond.shape[:-1])}"
            )
        emb = self.e(cond)
        group = x.dim() - cond.dim()
        emb = emb.reshape(*emb.shape[:-1], *([1] * group), emb.shape[-1])
        # q on [x; e(I)] without the concatenation: e(I)'s product once per condition
        assert isinstance(self.q.primary, MLP)
        return self.q.primary.forward_concat([x, emb], self.q.params())


def modularity_counts(
    d_x: int, d_i: int, embedding_dim: int, k: int, width: int = 100, g_hidden: int = 10
) -> dict[str, int]:
    """N_g, N_q, N_f, N_e of the modularity paper's synthetic experiment (Sec. 5, no biases).

    g and q: d_in-``g_hidden``-1; f and e: k linear layers of width ``width`` from d_I, with
    outputs N_g (f) and E (e). With d_x = d_I = 10³, E = 10⁴: N_g = 10⁴+10, N_q = 10⁴+10E+10,
    N_f = 10⁵+10⁴(k-2)+10²N_g, N_e = 10⁵+10⁴(k-2)+10⁶.
    """
    if k < 2:
        raise ValueError(f"k: expected at least 2 layers, got {k}")
    n_g = d_x * g_hidden + g_hidden
    n_q = (d_x + embedding_dim) * g_hidden + g_hidden
    trunk = d_i * width + width * width * (k - 2)
    return {
        "N_g": n_g,
        "N_q": n_q,
        "N_f": trunk + width * n_g,
        "N_e": trunk + width * embedding_dim,
    }
