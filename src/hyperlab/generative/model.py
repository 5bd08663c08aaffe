"""The generative hypernetwork G: z -> θ (generating-networks paper, Sec. 3.3 and App. A.7).

Noise z (uniform on [-b, b]^d_z) goes through an *extractor* MLP that emits one code per filter of
every target layer; one *weight generator* MLP per layer, shared by all filters of that layer,
maps each code to that filter's incoming weights and bias. The last layer is generated as a
single "filter". All MLPs: linear layers without biases, leaky-ReLU (slope 0.05) followed by
batch normalisation on hidden layers, linear output (notes C.2). For a layer's generator the
batch-norm moments pool over the noise batch *and* the filters, as in the released code.

Works for any [`ConvNet`][hyperlab.primary.ConvNet] or [`MLP`][hyperlab.primary.MLP] layout: a
conv filter is its (C, k, k) kernel (channel-major) plus bias, a dense filter is one weight row
plus bias. The output is a parameter dict in the primary's layout with leading batch dims of z.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hyperlab.generative.entropy import authors_entropy, kl_entropy
from hyperlab.generative.gauge import Layer, gauge_fix, layers_of
from hyperlab.primary import ConvNet, Primary, check_finite
from hyperlab.rng import seeded

__all__ = [
    "BNMLP",
    "GenerativeHyperNetwork",
    "PAPER_MNIST_GENERATOR_HIDDEN",
    "generative_loss",
    "recalibrate_batch_norm",
]

#: Hidden sizes of the four weight generators of App. A.7 / notes C.2 (W1…W4).
PAPER_MNIST_GENERATOR_HIDDEN = ((40, 40), (100, 100), (100, 100), (60, 60))
_TRUNC_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


class _BatchNorm(nn.BatchNorm1d):
    """BatchNorm1d whose offset is stored divided by ``offset_scale`` (same function at init).

    With Adam this multiplies the offsets' effective learning rate by ``offset_scale``. The
    offsets are the only source of filter-independent ("mean") weights in a bias-free
    generator. 1 = the paper. (Measured on the quick MNIST preset: 30 did not shorten the
    initial plateau of ~300 steps, so no preset uses it.)
    """

    def __init__(self, features: int, eps: float, momentum: float, offset_scale: float):
        super().__init__(features, eps=eps, momentum=momentum)
        self.offset_scale = float(offset_scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.offset_scale == 1.0:
            return super().forward(x)
        factor = 0.0
        if self.training:
            tracked = self.num_batches_tracked
            assert tracked is not None  # track_running_stats is on
            tracked.add_(1)
            factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
        y = nn.functional.batch_norm(
            x, self.running_mean, self.running_var, None, None, self.training, factor, self.eps
        )
        return y * self.weight + self.offset_scale * self.bias


class BNMLP(nn.Module):
    """Bias-free MLP: [Linear → leaky-ReLU → BatchNorm] × hidden, then a linear output layer.

    ``init_scale`` s: weights are truncated normal with std s/√fan_in (TF's
    ``variance_scaling_initializer(scale=s²)``; the released code uses s = 0.1).
    ``bn_offset_scale``: see ``_BatchNorm`` (1 = the paper).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        negative_slope: float = 0.05,
        batch_norm: bool = True,
        bn_momentum: float = 0.02,
        bn_eps: float = 1e-7,
        init_scale: float = 0.1,
        bn_offset_scale: float = 1.0,
    ):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ValueError(f"sizes: expected at least two positive ints, got {sizes}")
        self.sizes = sizes
        self.negative_slope = negative_slope
        self.linears: list[nn.Linear] = nn.ModuleList(  # type: ignore[assignment]
            nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.norms = nn.ModuleList(
            _BatchNorm(h, bn_eps, bn_momentum, bn_offset_scale) if batch_norm else nn.Identity()
            for h in sizes[1:-1]
        )
        for lin in self.linears:
            std = init_scale / math.sqrt(lin.in_features) / _TRUNC_STD
            nn.init.trunc_normal_(lin.weight, std=std, a=-2 * std, b=2 * std)

    def forward(self, x: Tensor) -> Tensor:
        """x: (M, sizes[0]) -> (M, sizes[-1]); batch-norm statistics are over the M rows."""
        for i, lin in enumerate(self.linears):
            x = lin(x)
            if i < len(self.norms):
                x = self.norms[i](nn.functional.leaky_relu(x, self.negative_slope))
        return x


def _default_hidden(layer_numel: int) -> tuple[int, int]:
    width = max(40, min(100, layer_numel))
    return (width, width)


class GenerativeHyperNetwork(nn.Module):
    """G: z -> θ producing every weight and bias of ``primary`` (Sec. 3.3).

    Args:
        primary: the target network ([`ConvNet`][hyperlab.primary.ConvNet] or
            [`MLP`][hyperlab.primary.MLP]).
        noise_dim: d_z (300 in the paper).
        extractor_hidden: hidden sizes of the extractor E (paper: 300, 300).
        code_size: size of each filter code (paper: 15), an int or one per layer.
        weight_generator_hidden: hidden sizes per layer's weight generator; default: the
            paper's sizes for the MNIST target, else two layers of width clamp(filter size, 40,
            100).
        negative_slope: leaky-ReLU slope of every MLP (0.05; see
            [`BNMLP`][hyperlab.generative.model.BNMLP]).
        batch_norm: batch normalisation on hidden layers.
        bn_momentum: BN momentum (0.02, i.e. EMA decay 0.98).
        bn_eps: BN epsilon (1e-7).
        init_scale: variance scale of the linear layers' init (0.1).
        bn_offset_scale: see [`BNMLP`][hyperlab.generative.model.BNMLP] (1 = the paper).
        noise_bound: z ~ U[-noise_bound, noise_bound]^noise_dim.
        generator: draws the initial weights (reproducibly; torch's global stream is left as
            it was); None: torch's global stream.
    """

    def __init__(
        self,
        primary: Primary,
        noise_dim: int = 300,
        *,
        extractor_hidden: Sequence[int] = (300, 300),
        code_size: int | Sequence[int] = 15,
        weight_generator_hidden: Sequence[Sequence[int]] | None = None,
        negative_slope: float = 0.05,
        batch_norm: bool = True,
        bn_momentum: float = 0.02,
        bn_eps: float = 1e-7,
        init_scale: float = 0.1,
        bn_offset_scale: float = 1.0,
        noise_bound: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if not isinstance(primary, Primary):
            raise TypeError(f"primary: expected a hyperlab Primary, got {type(primary).__name__}")
        if not isinstance(noise_dim, int) or noise_dim < 1:
            raise ValueError(f"noise_dim: expected a positive int, got {noise_dim!r}")
        if not noise_bound > 0:
            raise ValueError(f"noise_bound: expected a positive number, got {noise_bound!r}")
        self._primary = [primary]  # not a submodule: it holds no trainable state
        self.noise_dim = noise_dim
        self.noise_bound = float(noise_bound)
        self.layers: list[Layer] = layers_of(primary.layout)
        n = len(self.layers)
        codes = [int(code_size)] * n if isinstance(code_size, int) else [int(c) for c in code_size]
        if len(codes) != n or any(c < 1 for c in codes):
            raise ValueError(f"code_size: expected a positive int or {n} of them, got {code_size}")
        hidden = weight_generator_hidden
        if hidden is None:
            if _is_paper_mnist(primary):
                hidden = PAPER_MNIST_GENERATOR_HIDDEN
            else:
                hidden = [_default_hidden(self._out_size(i)) for i in range(n)]
        if len(hidden) != n:
            raise ValueError(
                f"weight_generator_hidden: expected {n} entries (one per layer), got {len(hidden)}"
            )
        self.code_sizes = codes
        # filters generated per layer: one per output unit, the last layer as one "filter"
        self.n_codes = [layer.n_filters for layer in self.layers[:-1]] + [1]
        mlp: dict[str, Any] = dict(
            negative_slope=negative_slope,
            batch_norm=batch_norm,
            bn_momentum=bn_momentum,
            bn_eps=bn_eps,
            init_scale=init_scale,
            bn_offset_scale=bn_offset_scale,
        )
        total_code = sum(c * k for c, k in zip(codes, self.n_codes, strict=True))
        with seeded(generator):
            self.extractor = BNMLP([noise_dim, *extractor_hidden, total_code], **mlp)
            self.generators = nn.ModuleList(
                BNMLP([codes[i], *hidden[i], self._out_size(i)], **mlp) for i in range(n)
            )

    @property
    def primary(self) -> Primary:
        return self._primary[0]

    def _out_size(self, i: int) -> int:
        layer = self.layers[i]
        return layer.numel if i == len(self.layers) - 1 else layer.filter_size

    def sample_noise(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """n noise vectors z ~ U[-b, b]^d_z: shape (n, noise_dim)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive int, got {n!r}")
        if device is None:
            device = next(self.parameters()).device
        u = torch.rand(n, self.noise_dim, generator=generator)
        return ((2 * u - 1) * self.noise_bound).to(device)

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        """Generate parameters for noise z of shape (*P, noise_dim): dict of (*P, *spec.shape).

        In training mode batch norm uses the statistics of the flattened batch P (needs > 1
        sample); in eval mode its running averages.
        """
        if not torch.is_tensor(z) or z.dim() < 1 or z.shape[-1] != self.noise_dim:
            shape = tuple(z.shape) if torch.is_tensor(z) else type(z).__name__
            raise ValueError(f"z: expected shape (..., {self.noise_dim}), got {shape}")
        check_finite(z, "z")
        batch = z.shape[:-1]
        m = math.prod(batch)
        codes = self.extractor(z.reshape(m, self.noise_dim))
        out: dict[str, Tensor] = {}
        offset = 0
        for i, (layer, gen) in enumerate(zip(self.layers, self.generators, strict=True)):
            k, c = self.n_codes[i], self.code_sizes[i]
            code = codes[:, offset : offset + k * c].reshape(m * k, c)
            offset += k * c
            filt = gen(code).reshape(m, -1)  # (m, k * out): filters in order
            w_shape, b = layer.weight.shape, layer.bias
            if i == len(self.layers) - 1:
                w = filt[:, : layer.weight.numel]
                bias = filt[:, layer.weight.numel :]
            else:
                filt = filt.reshape(m, k, layer.filter_size)
                fan = layer.weight.numel // k
                w, bias = filt[..., :fan], filt[..., fan:]
            out[layer.weight.name] = w.reshape(*batch, *w_shape)
            if b is not None:
                out[b.name] = bias.reshape(*batch, *b.shape)
        return {name: out[name] for name in self.primary.layout.names}

    def generate(
        self, n: int, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Draw n noise vectors and generate their parameters: (z, params)."""
        z = self.sample_noise(n, generator=generator)
        return z, self(z)

    def parameter_counts(self) -> Mapping[str, int]:
        """Trainable scalars per part: extractor, generator_<layer>, total (App. A.7 table)."""
        counts = {"extractor": sum(p.numel() for p in self.extractor.parameters())}
        for layer, gen in zip(self.layers, self.generators, strict=True):
            counts[f"generator_{layer.name}"] = sum(p.numel() for p in gen.parameters())
        counts["total"] = sum(counts.values())
        return counts


def _is_paper_mnist(primary: Primary) -> bool:
    if not isinstance(primary, ConvNet):
        return False
    shapes = [s.shape for s in primary.layout.specs]
    return shapes == [s.shape for s in ConvNet().layout.specs]


def generative_loss(
    model: GenerativeHyperNetwork | nn.parallel.DistributedDataParallel,
    images: Tensor,
    labels: Tensor,
    *,
    lam: float = 1e3,
    z: Tensor | None = None,
    estimator: str = "authors",
    gauge: bool = True,
    authors_sum_quirk: bool = False,
    target_dtype: torch.dtype | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of Eq. 1-3: ``λ · CE + (−Ĥ(gauge_fix(G(z))))`` for one noise × image batch.

    ``model`` may be wrapped in ``DistributedDataParallel`` (the forward goes through the
    wrapper); each rank's entropy term is over its own noise batch.

    ``images`` (B, G, *in_shape) and ``labels`` (B, G): network b sees its own G images
    (App. A.7: B = G = 32). ``z`` defaults to B fresh noise vectors. ``estimator``:
    ``'authors'`` ([`authors_entropy`][hyperlab.generative.entropy.authors_entropy], L1, d = d_z) or
    ``'kl'`` (the consistent L2 estimator with d = d_z). ``target_dtype=torch.bfloat16`` runs
    the target networks' forward (and so their backward) under autocast (fast with AMX or
    AVX-512 BF16); the generator, the CE and the entropy stay in float32. Returns (loss, parts)
    with parts ``ce``, ``entropy``, ``accuracy`` (detached).
    """
    if images.dim() < 3 or labels.shape != images.shape[:2]:
        raise ValueError(
            f"images/labels: expected (B, G, ...) and (B, G), got {tuple(images.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if estimator not in ("authors", "kl"):
        raise ValueError(f"estimator: expected 'authors' or 'kl', got {estimator!r}")
    gen = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    b = images.shape[0]
    if z is None:
        z = gen.sample_noise(b, device=images.device)
    params = model(z)  # through the DDP wrapper when there is one (gradient sync)
    primary = gen.primary
    if target_dtype is None:
        logits = primary(images, params)
    else:
        with torch.autocast(images.device.type, dtype=target_dtype):
            logits = primary(images, params)
        logits = logits.float()
    ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    fixed = gauge_fix(primary, params, authors_sum_quirk=authors_sum_quirk) if gauge else params
    flat = primary.layout.flatten(fixed)
    if estimator == "authors":
        ent = authors_entropy(flat, gen.noise_dim)
    else:
        ent = kl_entropy(flat, dim=gen.noise_dim, metric="l2", eps=1e-8)
    loss = lam * ce - ent
    acc = (logits.argmax(-1) == labels).float().mean()
    return loss, {"ce": ce.detach(), "entropy": ent.detach(), "accuracy": acc.detach()}


@torch.no_grad()
def recalibrate_batch_norm(
    model: GenerativeHyperNetwork,
    *,
    n_batches: int = 20,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> None:
    """Replace every batch-norm running average by exact averages over fresh noise batches.

    The released code evaluates with EMA statistics (decay 0.98); after a short training run the
    EMA still remembers its initial values, so the quick presets recompute the averages
    ("precise BN") over ``n_batches`` noise batches. Leaves the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for _ in range(n_batches):
        model(model.sample_noise(batch_size, generator=generator))
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    model.eval()
