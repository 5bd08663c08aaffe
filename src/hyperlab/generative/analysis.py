"""Analyses of generated networks (generating-networks paper, Sec. 4.2; protocols: notes C.6).

Everything is batched over networks: parameter dicts carry a leading network dimension B and one
call evaluates all B networks on shared images (chunked to bound memory).

* [`predict_logits`][hyperlab.generative.analysis.predict_logits],
[`accuracies`][hyperlab.generative.analysis.accuracies] — per-network test accuracy (Fig. 2
histograms);
* [`majority_vote`][hyperlab.generative.analysis.majority_vote],
[`ensemble_accuracies`][hyperlab.generative.analysis.ensemble_accuracies] — ensembles of generated
networks (4.2.2);
* [`disagreement_rate`][hyperlab.generative.analysis.disagreement_rate],
[`wrong_prediction_iou`][hyperlab.generative.analysis.wrong_prediction_iou],
[`pairwise_distances`][hyperlab.generative.analysis.pairwise_distances],
  [`filter_diversity`][hyperlab.generative.analysis.filter_diversity] — diversity measures that do
  not depend on the training objective;
* [`fgsm_attack`][hyperlab.generative.analysis.fgsm_attack] — targeted sign-gradient adversarial
examples against one network and
  transferred to an ensemble (4.2.3, Fig. 8);
* [`pca`][hyperlab.generative.analysis.pca] — principal components of weight vectors (Fig. 9, App.
A.8);
* [`interpolation_paths`][hyperlab.generative.analysis.interpolation_paths] — accuracy along
G(z(t)) and along the straight line between two
  generated weight vectors (Fig. 7).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from hyperlab.generative.gauge import gauge_fix
from hyperlab.primary import Params, Primary

__all__ = [
    "accuracies",
    "disagreement_rate",
    "wrong_prediction_iou",
    "ensemble_accuracies",
    "fgsm_attack",
    "filter_diversity",
    "interpolation_paths",
    "isotropic_pc1_share",
    "majority_vote",
    "pairwise_distances",
    "pca",
    "predict_logits",
    "slice_params",
]


def slice_params(params: Params, index: slice | Tensor | int) -> dict[str, Tensor]:
    """Select networks along the leading batch dimension of a parameter dict."""
    return {k: v[index] for k, v in params.items()}


def _n_networks(primary: Primary, params: Params) -> int:
    batch = primary.layout.batch_shape(params)
    if len(batch) != 1:
        raise ValueError(f"params: expected one leading network dimension, got {tuple(batch)}")
    return batch[0]


@torch.no_grad()
def predict_logits(
    primary: Primary,
    params: Params,
    images: Tensor,
    *,
    chunk: int = 4096,
) -> Tensor:
    """Logits of B networks on N shared images (N, *in_shape): shape (B, N, n_classes).

    ``chunk`` bounds networks × images per batched call.
    """
    b = _n_networks(primary, params)
    n = images.shape[0]
    if tuple(images.shape[1:]) != tuple(primary.in_shape):
        raise ValueError(
            f"images: expected (N, {', '.join(map(str, primary.in_shape))}), "
            f"got {tuple(images.shape)}"
        )
    nets = max(1, min(b, chunk // max(1, min(n, chunk))))
    imgs = max(1, min(n, chunk // nets))
    out = torch.empty(b, n, *primary.out_shape, dtype=images.dtype, device=images.device)
    for i in range(0, b, nets):
        p = slice_params(params, slice(i, i + nets))
        bi = min(nets, b - i)
        for j in range(0, n, imgs):
            x = images[j : j + imgs]
            out[i : i + bi, j : j + imgs] = primary(x.expand(bi, *x.shape), p)
    return out


def accuracies(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction correct per network: logits (B, N, C), labels (N,) -> (B,)."""
    if logits.shape[-2] != labels.shape[-1]:
        raise ValueError(
            f"labels: expected {logits.shape[-2]} labels, got shape {tuple(labels.shape)}"
        )
    return (logits.argmax(-1) == labels).float().mean(-1)


def majority_vote(predictions: Tensor, n_classes: int) -> Tensor:
    """Majority vote of (B, N) class predictions -> (N,); ties go to the smallest class."""
    counts = torch.nn.functional.one_hot(predictions, n_classes).sum(0)  # (N, C)
    return counts.argmax(-1)


def ensemble_accuracies(
    logits: Tensor, labels: Tensor, ensemble_size: int, rule: str = "majority"
) -> Tensor:
    """Accuracy of consecutive, disjoint ensembles of ``ensemble_size`` networks: (B // size,).

    ``rule``: ``'majority'`` (the paper's vote) or ``'mean_prob'`` (average softmax).
    """
    b = logits.shape[0]
    if not isinstance(ensemble_size, int) or not 1 <= ensemble_size <= b:
        raise ValueError(f"ensemble_size: expected an int in [1, {b}], got {ensemble_size!r}")
    if rule not in ("majority", "mean_prob"):
        raise ValueError(f"rule: expected 'majority' or 'mean_prob', got {rule!r}")
    m = b // ensemble_size
    groups = logits[: m * ensemble_size].reshape(m, ensemble_size, *logits.shape[1:])
    res = []
    for g in groups:
        if rule == "majority":
            pred = majority_vote(g.argmax(-1), logits.shape[-1])
        else:
            pred = g.softmax(-1).mean(0).argmax(-1)
        res.append((pred == labels).float().mean())
    return torch.stack(res)


def disagreement_rate(predictions: Tensor, n_classes: int) -> float:
    """Mean over pairs of networks of the fraction of inputs on which they disagree.

    predictions: (B, N) class indices, B >= 2. Computed from per-input class counts (no B² loop).
    """
    b = predictions.shape[0]
    if b < 2:
        raise ValueError(f"predictions: need at least 2 networks, got {b}")
    counts = torch.nn.functional.one_hot(predictions, n_classes).sum(0).double()  # (N, C)
    agree = (counts * (counts - 1)).sum(-1) / (b * (b - 1))
    return float((1 - agree).mean())


def wrong_prediction_iou(predictions: Tensor, labels: Tensor) -> float:
    """Mean over pairs of networks of the intersection-over-union of their sets of misclassified
    inputs (the diversity measure of p-diff, Wang et al. 2024): 1 = the same mistakes, 0 =
    disjoint ones. predictions: (B, N) class indices, B >= 2; labels: (N,). Pairs where
    neither network errs are left out (NaN if there are none)."""
    b = predictions.shape[0]
    if b < 2:
        raise ValueError(f"predictions: need at least 2 networks, got {b}")
    if labels.shape != predictions.shape[1:]:
        raise ValueError(
            f"labels: expected shape {tuple(predictions.shape[1:])}, got {tuple(labels.shape)}"
        )
    wrong = (predictions != labels).double()  # (B, N)
    inter = wrong @ wrong.T
    size = wrong.sum(1)
    union = size[:, None] + size[None, :] - inter
    i, j = torch.triu_indices(b, b, 1)
    inter, union = inter[i, j], union[i, j]
    keep = union > 0
    return float((inter[keep] / union[keep]).mean()) if bool(keep.any()) else float("nan")


def filter_diversity(weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """How much each filter varies across networks (Fig. 5): per filter, the mean over
    networks of the squared distance to the filter's mean, divided by its mean square.

    weight: (B, F, ...) one layer's filters of B networks (gauge-fixed: every filter then has
    mean square 1); bias: (B, F) or None. Returns (F,) values in [0, 1]: 0 when all networks
    share the filter, 1 when its mean over networks is zero.
    """
    if weight.dim() < 2 or weight.shape[0] < 2:
        raise ValueError(f"weight: expected (B >= 2, F, ...), got {tuple(weight.shape)}")
    w = weight.flatten(2)
    if bias is not None:
        if bias.shape != weight.shape[:2]:
            raise ValueError(f"bias: expected shape {tuple(weight.shape[:2])}, "
                             f"got {tuple(bias.shape)}")  # fmt: skip
        w = torch.cat([w, bias.unsqueeze(-1)], dim=-1)
    w = w.double()
    spread = (w - w.mean(0, keepdim=True)).square().sum(-1).mean(0)
    return (spread / w.square().sum(-1).mean(0).clamp_min(1e-300)).float()


def pairwise_distances(flat: Tensor, p: float = 2.0) -> Tensor:
    """Distances between weight vectors (B, D): the B(B−1)/2 upper-triangle entries, row by
    row (``pdist``: each pair once)."""
    if flat.dim() != 2:
        raise ValueError(f"flat: expected (B, D) weight vectors, got {tuple(flat.shape)}")
    return torch.nn.functional.pdist(flat, p)


def pca(flat: Tensor, n_components: int = 6) -> tuple[Tensor, Tensor]:
    """PCA of (B, D) vectors via SVD: (scores (B, k), explained variance ratio (k,))."""
    if flat.dim() != 2 or flat.shape[0] < 2:
        raise ValueError(f"flat: expected (B >= 2, D), got {tuple(flat.shape)}")
    k = min(n_components, *flat.shape)
    x = flat - flat.mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    var = s.square()
    return u[:, :k] * s[:k], var[:k] / var.sum()


def fgsm_attack(
    primary: Primary,
    attacked: Params,
    ensemble: Params,
    images: Tensor,
    labels: Tensor,
    perturbations: Sequence[float],
    *,
    generator: torch.Generator | None = None,
    n_classes: int = 10,
) -> dict[str, Tensor]:
    """Targeted fast-gradient-sign attack of one network, transferred to an ensemble (4.2.3).

    Protocol of notes C.6: for each test image the attacked network classifies correctly, a
    target class (label + U{1..9}) mod 10 is drawn; x' = x + p · sign(∇_x softmax_target(x)),
    no clipping, with p in ``perturbations`` (fractions of the dynamic range, e.g. k/255).
    Returns, for each p, the fraction of those images whose prediction differs from the label
    at some perturbation ≤ p (cumulative success, as plotted in Fig. 8), for the attacked
    network (``single``) and for the majority vote of ``ensemble`` (``ensemble``), and the
    same with "prediction = target" (``*_targeted``). ``attacked`` holds one unbatched network.
    """
    if primary.layout.batch_shape(attacked, "attacked") != torch.Size():
        raise ValueError("attacked: expected one unbatched parameter set")
    _n_networks(primary, ensemble)
    eps = torch.as_tensor(list(perturbations), dtype=images.dtype, device=images.device)
    if eps.dim() != 1 or len(eps) == 0:
        raise ValueError("perturbations: expected a non-empty sequence of numbers")
    with torch.no_grad():
        correct = primary(images, attacked).argmax(-1) == labels
    x, y = images[correct], labels[correct]
    offset = torch.randint(1, n_classes, y.shape, generator=generator).to(y.device)
    target = (y + offset) % n_classes
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        prob = primary(x, attacked).softmax(-1).gather(-1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(prob, x)
    direction = grad.sign()
    xs = x.detach().unsqueeze(0) + eps.view(-1, *[1] * x.dim()) * direction  # (P, M, ...)
    flat = xs.reshape(-1, *x.shape[1:])
    with torch.no_grad():
        single_pred = primary(flat, attacked).argmax(-1).reshape(len(eps), -1)
        ens_logits = predict_logits(primary, ensemble, flat)
        ens_pred = majority_vote(ens_logits.argmax(-1), n_classes).reshape(len(eps), -1)

    def cumulative(hit: Tensor) -> Tensor:  # (P, M): fooled at some perturbation <= p
        return hit.cummax(0).values.float().mean(-1) if hit.shape[1] else hit.float().sum(-1)

    return {
        "perturbations": eps.cpu(),
        "n_images": torch.tensor(int(correct.sum())),
        "single": cumulative(single_pred != y).cpu(),
        "ensemble": cumulative(ens_pred != y).cpu(),
        "single_targeted": cumulative(single_pred == target).cpu(),
        "ensemble_targeted": cumulative(ens_pred == target).cpu(),
    }


@torch.no_grad()
def interpolation_paths(
    generate: Callable[[Tensor], Params],
    primary: Primary,
    z0: Tensor,
    z1: Tensor,
    images: Tensor,
    labels: Tensor,
    n_points: int = 40,
    *,
    gauge: bool = True,
) -> dict[str, Tensor]:
    """Accuracy along the interpolated path G((1−t) z0 + t z1) and the direct path
    (1−t) θ0 + t θ1 between the two (gauge-fixed) endpoints, t on linspace(0, 1) (Fig. 7).
    """
    if n_points < 2:
        raise ValueError(f"n_points: expected at least 2, got {n_points}")
    t = torch.linspace(0, 1, n_points, dtype=z0.dtype, device=z0.device)
    zs = (1 - t)[:, None] * z0 + t[:, None] * z1
    interp = generate(zs)
    if gauge:
        interp = gauge_fix(primary, interp)
    ends = {k: v[[0, -1]] for k, v in interp.items()}
    direct = {}
    for k, v in ends.items():
        tt = t.view(n_points, *[1] * (v.dim() - 1))
        direct[k] = (1 - tt) * v[:1] + tt * v[1:]
    acc_i = accuracies(predict_logits(primary, interp, images), labels)
    acc_d = accuracies(predict_logits(primary, direct, images), labels)
    return {"t": t.cpu(), "interpolated": acc_i.cpu(), "direct": acc_d.cpu()}


def isotropic_pc1_share(n: int, d: int) -> float:
    """The share of variance the top principal component takes for ``n`` samples of isotropic
    Gaussian noise in ``d`` dimensions (centred): the Marchenko-Pastur edge over the mean
    eigenvalue, (1 + √(m / M))² / m with m = min(n - 1, d), M = max(n - 1, d). Any PC1 share of
    generated weights is judged against this null, not against 1/(n-1) (Fig. 9)."""
    if n < 2 or d < 1:
        raise ValueError(f"n, d: expected n >= 2 samples and d >= 1 dimensions, got {n}, {d}")
    m, big = min(n - 1, d), max(n - 1, d)
    return (1 + math.sqrt(m / big)) ** 2 / m
