"""Kozachenko–Leonenko nearest-neighbour entropy estimators (generating-networks paper, App. A.5).

Two forms, both differentiable in the samples:

* [`kl_entropy`][hyperlab.generative.entropy.kl_entropy] — the full, consistent estimator
  ``Ĥ = ψ(N) − ψ(k) + log V_d + (d/N) Σ_i log ε_i`` with ``ε_i`` the distance from sample i to
  its k-th nearest neighbour and ``V_d`` the volume of the unit ball of the metric (L2, L1 or
  L∞). With ``dim`` equal to the sample dimension it converges to the differential entropy.
* [`authors_entropy`][hyperlab.generative.entropy.authors_entropy] — the exact training form of the
released code (notes C.4):
  ``Ĥ = d_z · mean_i log(ε_i + 1e-8) + ψ(N)`` with L1 distances and ``d_z`` the *noise*
  dimension (the intrinsic dimension of the generated manifold, Eq. 13 and the text below it);
  the constants ``−ψ(1)`` and ``log V_d`` are dropped since they do not change gradients.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperlab.primary import check_finite

__all__ = ["Metric", "authors_entropy", "kl_entropy", "log_unit_ball_volume", "nn_distances"]

Metric = Literal["l2", "l1", "linf"]
_METRICS = ("l2", "l1", "linf")


def _check_samples(samples: Tensor, k: int = 1) -> Tensor:
    if not torch.is_tensor(samples):
        raise TypeError(f"samples: expected a tensor, got {type(samples)}")
    if samples.dim() < 2:
        raise ValueError(
            f"samples: expected shape (N, ...) with N >= 2, got {tuple(samples.shape)}"
        )
    x = samples.reshape(samples.shape[0], -1)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.shape[0] <= k:
        raise ValueError(
            f"samples: need more than k={k} samples for a k-th nearest neighbour, got {x.shape[0]}"
        )
    check_finite(x, "samples")
    return x


def _distance_matrix(x: Tensor, p: float) -> Tensor:
    """The (N, N) p-norm distances between the rows of x (N, D), zero diagonal. Each pair is
    computed once, by ``pdist``: on CPU several times faster than ``cdist``, which computes
    both triangles (``benchmarks/generative_step.py`` times both), and closer to float64
    (tested)."""
    n = x.shape[0]
    upper = torch.ones(n, n, dtype=torch.bool, device=x.device).triu_(1)
    d = x.new_zeros(n, n).masked_scatter_(upper, F.pdist(x, p))
    return d + d.T


def nn_distances(samples: Tensor, metric: Metric = "l2", k: int = 1, eps: float = 0.0) -> Tensor:
    """Distance from each of the N samples (N, ...) to its k-th nearest other sample: shape (N,).

    Samples are flattened after the first dimension. ``eps`` is added to squared L2 distances
    before the square root (keeps gradients finite when two samples coincide). The neighbours
    are found on all N² distances without autograd (``pdist``); only the N chosen distances are
    recomputed with it (the same values and gradients as differentiating cdist, without its
    backward).
    """
    if metric not in _METRICS:
        raise ValueError(f"metric: expected one of {_METRICS}, got {metric!r}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")
    x = _check_samples(samples, k)
    p = {"l1": 1.0, "l2": 2.0, "linf": math.inf}[metric]
    with torch.no_grad():
        d = _distance_matrix(x.detach(), p)
        d.fill_diagonal_(math.inf)
        nearest = d.topk(k, dim=1, largest=False).indices[:, k - 1]
    diff = x - x[nearest]
    if metric == "l1":
        return diff.abs().sum(-1)
    if metric == "linf":
        return diff.abs().amax(-1)
    sq = diff.square().sum(-1) + eps
    # a duplicate sample has distance 0 and, as in cdist's backward, gradient 0 (not NaN)
    return torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), 0.0)


def log_unit_ball_volume(dim: int, metric: Metric = "l2") -> float:
    """log of the volume of the unit ball in R^dim: L2 π^{d/2}/Γ(d/2+1), L1 2^d/d!, L∞ 2^d."""
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim: expected a positive int, got {dim!r}")
    if metric == "l2":
        return 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim + 1.0)
    if metric == "l1":
        return dim * math.log(2.0) - math.lgamma(dim + 1.0)
    if metric == "linf":
        return dim * math.log(2.0)
    raise ValueError(f"metric: expected one of {_METRICS}, got {metric!r}")


def kl_entropy(
    samples: Tensor,
    *,
    dim: int | None = None,
    metric: Metric = "l2",
    k: int = 1,
    eps: float = 0.0,
) -> Tensor:
    """Consistent Kozachenko–Leonenko entropy estimate (nats) of samples (N, ...); scalar tensor.

    ``dim`` is the dimension d in the estimator (default: the flattened sample dimension; the
    paper uses the noise dimension for generated weights, App. A.5). ``eps`` is added inside
    the log of each distance (0 = exact; the released code uses 1e-8).
    """
    x = _check_samples(samples, k)
    d = x.shape[1] if dim is None else dim
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"dim: expected a positive int, got {dim!r}")
    n = x.shape[0]
    dist = nn_distances(x, metric, k)
    const = (
        torch.special.digamma(torch.tensor(float(n), dtype=torch.float64)).item()
        - torch.special.digamma(torch.tensor(float(k), dtype=torch.float64)).item()
        + log_unit_ball_volume(d, metric)
    )
    return d * torch.log(dist + eps).mean() + const


def authors_entropy(samples: Tensor, noise_dim: int, eps: float = 1e-8) -> Tensor:
    """The released code's entropy term (notes C.4): ``d_z · mean log(ε_i + eps) + ψ(N)``, L1.

    Differs from [`kl_entropy`][hyperlab.generative.entropy.kl_entropy] (``metric='l1'``,
    ``dim=noise_dim``) only by the constant
    ``−ψ(1) + log V_d``, which does not affect training.
    """
    if not isinstance(noise_dim, int) or noise_dim < 1:
        raise ValueError(f"noise_dim: expected a positive int, got {noise_dim!r}")
    x = _check_samples(samples)
    dist = nn_distances(x, "l1", 1)
    psi_n = torch.special.digamma(torch.tensor(float(x.shape[0]), dtype=torch.float64)).item()
    return noise_dim * torch.log(dist + eps).mean() + psi_n
