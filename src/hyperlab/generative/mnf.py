"""Multiplicative normalizing flows (MNF, Louizos & Welling 2017) on a hyperlab primary.

The generating-networks paper's baseline "MNFG" (Sec. 2, 4.2; notes C.8). For every layer:

* W | z ~ N(z ⊙ μ_W, σ_W²) with the multiplicative noise z shared along one axis of W (one
  entry per output filter of a conv layer, one per input unit of a dense layer);
* z = f_q(z₀), z₀ ~ N(μ₀, σ₀²), f_q = ``flows_q`` masked RealNVP steps (hidden ``flow_hidden``);
* KL(q(W)‖p(W)) is bounded with the auxiliary r(z|W) of the MNF paper (Eq. 10-12): an inverse
  flow f_r (``flows_r`` steps) and a Gaussian whose mean / log-variance are b₁ · ā, b₂ · ā
  with ā = mean(tanh(cᵀ W)); prior p(W) = N(0, ``prior_var``); biases are point estimates.

Settings of notes C.8: flows_q = flows_r = 2, flow_hidden = 50, thres_var = 0.5 (σ_W² ≤ 0.5),
prior variance 1, learn_p = False. Differences from the released MNF code, stated: weights are
sampled directly (one weight set per group of images, like the generator) rather than through the
local reparameterisation of activations, and the RealNVP masks are fixed (alternating) rather
than redrawn.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hyperlab.generative.gauge import Layer, layers_of
from hyperlab.primary import Primary
from hyperlab.rng import seeded

__all__ = ["MNFNetwork", "MaskedRealNVP"]

_LOG2PI = math.log(2 * math.pi)


class MaskedRealNVP(nn.Module):
    """One masked RealNVP step of MNF: y = m⊙z + (1−m)⊙(z⊙s + (1−s)⊙μ), s = sigmoid(·)."""

    def __init__(self, dim: int, hidden: int, parity: int):
        super().__init__()
        mask = torch.zeros(dim)
        mask[parity::2] = 1.0
        if dim == 1:
            mask[:] = 0.0  # a single coordinate: a plain (conditioned on nothing) affine step
        self.mask: Tensor
        self.register_buffer("mask", mask)
        self.hidden = nn.Linear(dim, hidden)
        self.mu = nn.Linear(hidden, dim)
        self.gate = nn.Linear(hidden, dim)
        for lin in (self.hidden, self.mu, self.gate):
            nn.init.normal_(lin.weight, std=0.01)
            nn.init.zeros_(lin.bias)
        nn.init.constant_(self.gate.bias, 3.0)  # start close to the identity

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (M, dim) -> (y, log|det ∂y/∂z|) of shapes (M, dim), (M,)."""
        h = torch.tanh(self.hidden(self.mask * z))
        s = torch.sigmoid(self.gate(h))
        y = self.mask * z + (1 - self.mask) * (z * s + (1 - s) * self.mu(h))
        return y, ((1 - self.mask) * torch.log(s)).sum(-1)


class _MNFLayer(nn.Module):
    def __init__(self, layer: Layer, z_axis: int, cfg: dict):
        super().__init__()
        self.layer, self.z_axis = layer, z_axis
        shape = layer.weight.shape
        self.z_dim = shape[z_axis]
        self.mu_w = nn.Parameter(torch.randn(shape) * math.sqrt(2.0 / layer.weight.fan_in))
        self.logvar_w = nn.Parameter(-9.0 + 1e-3 * torch.randn(shape))
        self.bias = nn.Parameter(torch.zeros(layer.bias.shape)) if layer.bias is not None else None
        self.q0_mean = nn.Parameter(1.0 + 0.01 * torch.randn(self.z_dim))
        self.q0_logvar = nn.Parameter(math.log(0.01) + 0.01 * torch.randn(self.z_dim))
        rest = layer.weight.numel // self.z_dim
        self.r_c = nn.Parameter(0.01 * torch.randn(self.z_dim))
        self.r_b1 = nn.Parameter(0.01 * torch.randn(self.z_dim))
        self.r_b2 = nn.Parameter(0.01 * torch.randn(self.z_dim))
        self.flow_q = nn.ModuleList(
            MaskedRealNVP(self.z_dim, cfg["flow_hidden"], i % 2) for i in range(cfg["flows_q"])
        )
        self.flow_r = nn.ModuleList(
            MaskedRealNVP(self.z_dim, cfg["flow_hidden"], i % 2) for i in range(cfg["flows_r"])
        )
        self.log_thres = math.log(cfg["thres_var"])
        self.prior_var = cfg["prior_var"]
        self._rest = rest

    def _z_view(self, n: int) -> tuple[int, ...]:
        """Shape that broadcasts z (n, z_dim) against W (n, *shape)."""
        shape = [1] * len(self.layer.weight.shape)
        shape[self.z_axis] = self.z_dim
        return (n, *shape)

    @property
    def noise_numel(self) -> int:
        return self.z_dim + self.layer.weight.numel

    def sample(self, n: int, noise: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
        """n weight samples (n, *shape), the bias, and the per-sample KL bound (n,).

        ``noise`` (n, z_dim + numel(W)): the standard-normal ε of z₀ and of W (drawn if None).
        """
        if noise is None:
            noise = torch.randn(n, self.noise_numel, device=self.mu_w.device)
        eps0 = noise[:, : self.z_dim]
        eps_w = noise[:, self.z_dim :].reshape(n, *self.layer.weight.shape)
        z0 = self.q0_mean + torch.exp(0.5 * self.q0_logvar) * eps0
        log_q = -0.5 * (_LOG2PI + self.q0_logvar + eps0.square()).sum(-1)
        z = z0
        for f in self.flow_q:
            z, ld = f(z)
            log_q = log_q - ld
        logvar = self.logvar_w.clamp(max=self.log_thres)
        var = logvar.exp()
        mean = z.reshape(self._z_view(n)) * self.mu_w
        w = mean + var.sqrt() * eps_w
        # KL(q(W|z) || N(0, prior_var)), summed over the layer's weights
        kl_w = 0.5 * (
            math.log(self.prior_var) - logvar + (var + mean.square()) / self.prior_var - 1.0
        ).flatten(1).sum(-1)
        # auxiliary r(z | W): ā = mean_j tanh(Σ_i c_i W_ij) with i along the z axis
        wm = w.movedim(self.z_axis + 1, 1).reshape(n, self.z_dim, self._rest)
        a = torch.tanh((self.r_c[None, :, None] * wm).sum(1)).mean(-1, keepdim=True)  # (n, 1)
        mu_r, logvar_r = self.r_b1 * a, self.r_b2 * a
        zr, log_r = z, torch.zeros(n, device=z.device)
        for f in self.flow_r:
            zr, ld = f(zr)
            log_r = log_r + ld
        log_r = log_r - 0.5 * (_LOG2PI + logvar_r + (zr - mu_r).square() / logvar_r.exp()).sum(-1)
        return w, self.bias, kl_w - log_r + log_q


class MNFNetwork(nn.Module):
    """MNF posterior over the weights of a [`ConvNet`][hyperlab.primary.ConvNet] /
    [`MLP`][hyperlab.primary.MLP]
    primary.

    ``sample(n)`` gives n weight sets in the primary's layout (batch dim n) and the KL bound;
    ``loss(images, labels, n_train)`` the negative ELBO per training example.
    """

    def __init__(
        self,
        primary: Primary,
        *,
        flows_q: int = 2,
        flows_r: int = 2,
        flow_hidden: int = 50,
        thres_var: float = 0.5,
        prior_var: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        """``generator`` draws the initial parameters (torch's global stream is left as it
        was); None: torch's global stream."""
        super().__init__()
        if not isinstance(primary, Primary) or not primary.layered:
            raise TypeError(
                "primary: expected a layered primary (MLP, ConvNet: Primary.layered), got "
                f"{type(primary).__name__}"
            )
        if thres_var <= 0 or prior_var <= 0:
            raise ValueError(
                f"thres_var, prior_var: expected positive values, got {thres_var}, {prior_var}"
            )
        self._primary = [primary]
        cfg = dict(
            flows_q=flows_q,
            flows_r=flows_r,
            flow_hidden=flow_hidden,
            thres_var=thres_var,
            prior_var=prior_var,
        )
        with seeded(generator):
            self.mnf_layers: list[_MNFLayer] = nn.ModuleList(  # type: ignore[assignment]
                # conv weights (O, C, k, k): z per output filter; dense (out, in): z per input
                _MNFLayer(layer, 0 if len(layer.weight.shape) == 4 else 1, cfg)
                for layer in layers_of(primary.layout)
            )

    @property
    def primary(self) -> Primary:
        return self._primary[0]

    @property
    def noise_dim(self) -> int:
        """Size of the full standard-normal noise vector ε behind one weight sample."""
        return sum(m.noise_numel for m in self.mnf_layers)

    def sample_noise(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n standard-normal noise vectors (n, noise_dim) (MNFG's "noise", notes C.8)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive int, got {n!r}")
        dev = self.mnf_layers[0].mu_w.device
        return torch.randn(n, self.noise_dim, generator=generator).to(dev)

    def sample(self, n: int, noise: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor]:
        """n weight sets (dict with leading dim n) and the summed per-sample KL bound (n,).

        ``noise`` (n, noise_dim) makes the sample a deterministic function of ε (for paths).
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive int, got {n!r}")
        if noise is not None and noise.shape != (n, self.noise_dim):
            raise ValueError(
                f"noise: expected shape ({n}, {self.noise_dim}), got {tuple(noise.shape)}"
            )
        params: dict[str, Tensor] = {}
        kl: Tensor | float = 0.0
        offset = 0
        for m in self.mnf_layers:
            eps = None
            if noise is not None:
                eps = noise[:, offset : offset + m.noise_numel]
                offset += m.noise_numel
            w, b, k = m.sample(n, eps)
            params[m.layer.weight.name] = w
            if b is not None and m.layer.bias is not None:
                params[m.layer.bias.name] = b.expand(n, *b.shape)
            kl = kl + k
        return {k: params[k] for k in self.primary.layout.names}, torch.as_tensor(kl)

    def forward(self, noise: Tensor) -> dict[str, Tensor]:
        """Weights for noise vectors (n, noise_dim): the MNF sampler as a map ε -> θ."""
        return self.sample(noise.shape[0], noise)[0]

    def loss(
        self, images: Tensor, labels: Tensor, n_train: int, kl_weight: float = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Negative ELBO per example: mean NLL + kl_weight · KL / n_train.

        ``images`` (S, G, *in_shape), ``labels`` (S, G): S weight samples, G images each.
        """
        if images.dim() < 3 or labels.shape != images.shape[:2]:
            raise ValueError(
                f"images/labels: expected (S, G, ...) and (S, G), got {tuple(images.shape)} "
                f"and {tuple(labels.shape)}"
            )
        params, kl = self.sample(images.shape[0])
        logits = self.primary(images, params)
        nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss = nll + kl_weight * kl.mean() / n_train
        return loss, {"nll": nll.detach(), "kl": kl.mean().detach()}
