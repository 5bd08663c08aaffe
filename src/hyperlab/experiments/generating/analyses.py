"""What both MNIST generating experiments report, for any noise -> weights model.

Accuracy histograms (Fig. 2), majority-vote ensembles (4.2.2), diversity (prediction
disagreement, gauge-fixed distances, entropy), targeted FGSM on one network and on an ensemble
(Fig. 8), PCA of gauge-fixed weights (Fig. 9), interpolated vs direct paths (Fig. 7) and
first-layer filters (Fig. 3).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from hyperlab.data import load_mnist
from hyperlab.experiments.base import RunContext
from hyperlab.experiments.claims import Claim, at_least, binomial_se, compare
from hyperlab.experiments.config import Config, param
from hyperlab.generative import gauge_fix
from hyperlab.generative.analysis import (
    accuracies,
    disagreement_rate,
    ensemble_accuracies,
    fgsm_attack,
    filter_diversity,
    interpolation_paths,
    isotropic_pc1_share,
    pairwise_distances,
    pca,
    predict_logits,
    slice_params,
    wrong_prediction_iou,
)
from hyperlab.generative.entropy import authors_entropy, kl_entropy
from hyperlab.plots import plt


@dataclass(frozen=True)
class AnalysisConfig(Config):
    """Data and the analyses' sizes, shared by generating-mnist and the MNF baseline."""

    download: bool = param(True, "download missing MNIST files")
    n_train: int = param(55_000, "training images (TF's train split; its last 5k validate)",
                         min=1)  # fmt: skip
    n_test: int = param(10_000, "test images", min=1)
    noise_dim: int = param(300, "noise dimension d_z (also the d of the entropy estimate)", min=1)
    ensemble_size: int = param(200, "networks per majority-vote ensemble (4.2.2)", min=1)
    n_ensembles: int = param(20, "ensembles; ensemble_size x n_ensembles networks are drawn",
                             min=1)  # fmt: skip
    n_diversity: int = param(200, "networks in the diversity statistics", min=2)
    fgsm_images: int = param(10_000, "test images attacked", min=1)
    fgsm_ensemble: int = param(100, "networks in the attacked ensemble", min=1)
    fgsm_max_p: int = param(58, "largest perturbation p (x 1/255)", min=0)
    fgsm_p_step: int = param(2, "step of p", min=1)
    n_pca: int = param(3000, "networks in the PCA", min=7)
    path_pairs: int = param(10, "pairs of networks joined by paths", min=1)
    path_points: int = param(40, "points per path", min=2)
    path_images: int = param(10_000, "test images scored along the paths", min=1)
    eval_chunk: int = param(8192, "images per evaluation chunk", min=1)
    accuracy_claim_threshold: float = param(0.975, "mean test accuracy at or above which "
                                            "'accurate' holds (0.975: the paper's histograms, "
                                            "Fig. 2)", min=0)  # fmt: skip
    cpu_threads: int | None = param(1, "torch CPU threads", min=1)


#: The analysis sizes the paper states (4.2.2: 20 ensembles of 200 networks; notes C.6), the
#: defaults of [`AnalysisConfig`][hyperlab.experiments.generating.analyses.AnalysisConfig]
ANALYSIS_SIZES = (
    "n_test",
    "ensemble_size",
    "n_ensembles",
    "fgsm_images",
    "fgsm_ensemble",
    "n_pca",
    "path_pairs",
    "path_points",
    "path_images",
)

#: The analysis sizes of the quick and tiny presets, shared by both experiments.
ANALYSIS_QUICK = {"n_train": 12_800, "n_test": 1_000, "ensemble_size": 10, "n_ensembles": 4,
                  "n_diversity": 40, "fgsm_images": 200, "fgsm_ensemble": 10, "fgsm_p_step": 6,
                  "n_pca": 200, "path_pairs": 3, "path_points": 11, "path_images": 500,
                  "eval_chunk": 4096, "accuracy_claim_threshold": 0.5}  # fmt: skip
ANALYSIS_TINY = ANALYSIS_QUICK | {
    "n_train": 256, "n_test": 100, "ensemble_size": 3, "n_ensembles": 2, "n_diversity": 6,
    "fgsm_images": 30, "fgsm_ensemble": 3, "fgsm_p_step": 29, "n_pca": 8, "path_pairs": 1,
    "path_points": 3, "path_images": 30, "accuracy_claim_threshold": 0.1,
}  # fmt: skip


#: The headline statistics both experiments copy to the top of their metrics.
HEADLINE_KEYS = ("accuracy_mean", "accuracy_std", "ensemble_accuracy", "prediction_disagreement",
                 "wrong_prediction_iou")  # fmt: skip


def headline(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The [`HEADLINE_KEYS`][hyperlab.experiments.generating.analyses.HEADLINE_KEYS] of one model's
    analyses."""
    return {key: stats[key] for key in HEADLINE_KEYS}


def config_key(cfg: Config, keys: tuple[str, ...]) -> str:
    """Short hash of the settings that shape a trained model but are not in TrainConfig, so a
    changed setting never resumes a checkpoint trained with another (fit() checks the rest)."""
    blob = json.dumps({k: getattr(cfg, k) for k in keys}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def mnist_data(ctx: RunContext[AnalysisConfig]) -> dict[str, Tensor]:
    """Training images (uint8) and labels; test images in [0, 1] on the run's device."""
    cfg = ctx.config
    xtr, ytr = load_mnist("train", data_dir=ctx.data_dir, download=cfg.download)
    xte, yte = load_mnist("test", data_dir=ctx.data_dir, download=cfg.download)
    return {
        "train_x": xtr[: cfg.n_train],
        "train_y": ytr[: cfg.n_train],
        "test_x": (xte[: cfg.n_test].float() / 255.0).unsqueeze(1).to(ctx.device),
        "test_y": yte[: cfg.n_test].to(ctx.device),
    }


def generate(model, n: int, generator: torch.Generator, chunk: int = 256):
    """n networks (gauge-fixed and raw) from fresh noise, generated in chunks (eval-mode BN)."""
    z = model.sample_noise(n, generator=generator)
    with torch.no_grad():
        parts = [model(z[i : i + chunk]) for i in range(0, n, chunk)]
    raw = {k: torch.cat([p[k] for p in parts]).detach() for k in parts[0]}
    return z, raw, gauge_fix(model.primary, raw)


#: Fig. 2's accuracy axis (%), and the accuracy most of its networks reach.
PAPER_AXIS = (97.0, 99.1)
PAPER_ACCURACY = 0.975


def hist_figure(ctx: RunContext[AnalysisConfig], accs: Mapping[str, list[float]]) -> str:
    """Accuracy histograms of generated networks, one panel per source (Fig. 2). The x-axis
    covers the data and the paper's axis (97-99.1 %, shaded), with 0.1 % bins (at most 150)."""
    fig, axes = plt.subplots(1, len(accs), figsize=(4.2 * len(accs), 3.3), squeeze=False)
    for ax, (label, a) in zip(axes[0], accs.items(), strict=True):
        pct = 100 * np.asarray(a)
        lo = min(PAPER_AXIS[0], np.floor(pct.min() * 10) / 10)
        hi = max(PAPER_AXIS[1], np.ceil(pct.max() * 10) / 10)
        bins = np.linspace(lo, hi, min(max(int(round((hi - lo) * 10)), 1), 150) + 1)
        ax.axvspan(*PAPER_AXIS, color="0.9", zorder=0, label="paper's axis (Fig. 2)")
        ax.hist(pct, bins=bins, color="tab:blue")
        ax.set_xlabel("test accuracy (%)")
        ax.set_ylabel("networks")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        share = float((pct >= 100 * PAPER_ACCURACY).mean())
        ax.set_title(f"{label}: {len(a)} networks, mean {pct.mean():.2f} %,\n"
                     f"{share:.1%} at >= 97.5 %", fontsize=9)  # fmt: skip
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Accuracy of generated networks (Fig. 2)", y=1.03)
    fig.tight_layout()
    return ctx.save_figure(fig, "accuracy_histograms")


def population_stats(
    ctx: RunContext[AnalysisConfig], model, data, tag: str
) -> tuple[dict[str, Any], Tensor, dict[str, Tensor]]:
    """Accuracy of ``ensemble_size x n_ensembles`` networks on the test set (Fig. 2), their
    majority-vote ensembles (4.2.2) and diversity: prediction disagreement, p-diff's
    wrong-prediction IoU, gauge-fixed distances, entropy and first-layer filter diversity
    (Fig. 5). Returns (metrics, per-network accuracies, gauge-fixed weights)."""
    cfg = ctx.config
    xt, yt = data["test_x"], data["test_y"]
    size, count = cfg.ensemble_size, cfg.n_ensembles
    _, raw, fixed = generate(model, size * count, ctx.generator("eval", tag))
    logits = predict_logits(model.primary, raw, xt, chunk=cfg.eval_chunk)
    acc = accuracies(logits, yt)
    ens = ensemble_accuracies(logits, yt, size)
    ens_p = ensemble_accuracies(logits, yt, size, rule="mean_prob")
    preds = logits.argmax(-1)
    n_div = min(preds.shape[0], cfg.n_diversity)
    div = slice_params(fixed, slice(0, n_div))
    flat = model.primary.layout.flatten(div)
    dists = pairwise_distances(flat)
    norms = flat.norm(dim=1)
    filters = filter_diversity(div["conv0.weight"], div.get("conv0.bias"))
    m = {
        "accuracy_mean": acc.mean().item(),
        "accuracy_std": acc.std().item(),
        "accuracy_min": acc.min().item(),
        "accuracy_max": acc.max().item(),
        "share_at_least_97_5": (acc >= PAPER_ACCURACY).float().mean().item(),
        "n_networks": int(acc.numel()),
        "ensemble_accuracy": ens.mean().item(),
        "ensemble_accuracy_mean_prob": ens_p.mean().item(),
        "ensemble_size": size,
        "n_ensembles": count,
        "prediction_disagreement": disagreement_rate(preds[:n_div], 10),
        "wrong_prediction_iou": wrong_prediction_iou(preds[:n_div], yt),
        "gauge_fixed_pairwise_l2_mean": dists.mean().item(),
        "gauge_fixed_pairwise_l2_std": dists.std().item(),
        "gauge_fixed_pairwise_l2_over_norm": (dists.mean() / norms.mean()).item(),
        "entropy_authors_form": authors_entropy(flat, cfg.noise_dim).item(),
        "entropy_kl_l2_dz": kl_entropy(flat, dim=cfg.noise_dim, eps=1e-12).item(),
        "conv0_filter_diversity": filters.tolist(),
        "conv0_filter_diversity_min": filters.min().item(),
        "conv0_filter_diversity_median": filters.median().item(),
        "n_diversity_networks": n_div,
    }
    return m, acc, fixed


def run_analyses(
    ctx: RunContext[AnalysisConfig], model, data, tag: str, hist_accs: dict, metrics: dict
) -> list[str]:
    """Ensembles, diversity, FGSM, PCA, paths and filter images for one source of networks.

    ``model`` maps noise to weights: ``model.sample_noise(n, generator=)`` and
    ``model(noise)`` (the generator, or the MNF sampler with its full ε as noise).
    """
    primary = model.primary
    cfg = ctx.config
    xt, yt = data["test_x"], data["test_y"]
    figures = []
    m, acc, _ = population_stats(ctx, model, data, tag)
    hist_accs[tag] = acc.tolist()

    # FGSM (4.2.3): attack one network, transfer to a fresh ensemble
    gfg = ctx.generator("fgsm", tag)
    _, att_raw, _ = generate(model, 1, gfg)
    _, ens_raw, _ = generate(model, cfg.fgsm_ensemble, gfg)
    n_adv = cfg.fgsm_images
    eps = [p / 255.0 for p in range(0, cfg.fgsm_max_p + 1, cfg.fgsm_p_step)]
    adv = fgsm_attack(
        primary, slice_params(att_raw, 0), ens_raw, xt[:n_adv], yt[:n_adv], eps, generator=gfg
    )
    m["fgsm"] = {k: v.tolist() for k, v in adv.items()}
    m["fgsm_p"] = [round(e * 255) for e in eps]
    figures.append(_fgsm_figure(ctx, adv, tag))

    # PCA scatter (Fig. 9, App. A.8) on gauge-fixed weights
    _, _, pfix = generate(model, cfg.n_pca, ctx.generator("pca", tag))
    scores, ratio = pca(primary.layout.flatten(pfix), 6)
    _, ratio0 = pca(pfix["conv0.weight"].flatten(1), 6)
    m["pca_explained_variance_ratio_all"] = ratio.tolist()
    m["pca_explained_variance_ratio_conv0"] = ratio0.tolist()
    figures.append(_pca_figure(ctx, scores, ratio, tag))

    # paths (Fig. 7)
    gp = ctx.generator("paths", tag)
    n_path = cfg.path_images
    paths = []
    with torch.no_grad():
        for _ in range(cfg.path_pairs):
            z = model.sample_noise(2, generator=gp)
            paths.append(interpolation_paths(model, primary, z[0], z[1], xt[:n_path],
                                             yt[:n_path], cfg.path_points))  # fmt: skip
        inter = torch.stack([p["interpolated"] for p in paths])
        direct = torch.stack([p["direct"] for p in paths])
        m["path_t"] = paths[0]["t"].tolist()
        m["path_interpolated_accuracy"] = inter.tolist()
        m["path_direct_accuracy"] = direct.tolist()
        m["path_min_accuracy_interpolated"] = inter.min(1).values.mean().item()
        m["path_min_accuracy_direct"] = direct.min(1).values.mean().item()
        figures.append(_paths_figure(ctx, paths[0]["t"], inter, direct, tag))

    # first-layer filters (Figs. 3, 5): the most and the least diverse one
    order = torch.tensor(m["conv0_filter_diversity"]).argsort(descending=True)
    figures.append(_filters_figure(ctx, pfix["conv0.weight"][:25], tag,
                                   [int(order[0]), int(order[-1])]))  # fmt: skip
    metrics[tag] = m
    return figures


def summary_rows(main: Mapping[str, Any], refs: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """The comparison rows both experiments print; ``refs`` gives the paper's side per row."""
    fg = main["fgsm"]
    return [
        ("majority-vote ensemble accuracy", refs["ensemble"],
         f"{main['ensemble_accuracy']:.2%} ({main['n_ensembles']} x {main['ensemble_size']})"),
        ("prediction disagreement (pairs)", "-", f"{main['prediction_disagreement']:.4f}"),
        ("wrong-prediction IoU (pairs; p-diff's measure)", "-",
         f"{main['wrong_prediction_iou']:.4f}"),
        ("gauge-fixed pairwise L2 / mean norm", "-",
         f"{main['gauge_fixed_pairwise_l2_over_norm']:.4f}"),
        ("conv0 filter diversity: least diverse / median", "some MNFG filters very low (Fig. 5)",
         f"{main['conv0_filter_diversity_min']:.4f} / "
         f"{main['conv0_filter_diversity_median']:.4f}"),
        ("PCA: variance share of PC1-PC3 (all weights)", refs["pca"],
         " / ".join(f"{v:.3f}" for v in main["pca_explained_variance_ratio_all"][:3])),
        ("FGSM success at max p: single / ensemble", refs["fgsm"],
         f"{fg['single'][-1]:.2f} / {fg['ensemble'][-1]:.2f} (p = {main['fgsm_p'][-1]})"),
        ("min path accuracy: interpolated / direct", refs["paths"],
         f"{main['path_min_accuracy_interpolated']:.3f} / "
         f"{main['path_min_accuracy_direct']:.3f}"),
    ]  # fmt: skip


def _fgsm_figure(ctx, adv, tag) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.3))
    p = (adv["perturbations"] * 255).numpy()
    ax.plot(p, adv["single"].numpy(), label="single network")
    ax.plot(p, adv["ensemble"].numpy(), label="ensemble (majority vote)")
    ax.set_xlabel("perturbation p (x 1/255)")
    ax.set_ylabel("attack success (prediction ≠ label)")
    ax.set_title(f"Targeted FGSM, {tag} (Fig. 8)")
    ax.legend()
    return ctx.save_figure(fig, f"fgsm_{tag}")


def _pca_figure(ctx, scores: Tensor, ratio: Tensor, tag: str) -> str:
    """Scatter matrix of the first principal components (histograms on the diagonal); each
    axis is labelled with its component and share of the variance."""
    k = scores.shape[1]
    fig, axes = plt.subplots(k, k, figsize=(1.7 * k, 1.7 * k))
    s = scores.numpy()
    names = [f"PC{i + 1} ({100 * float(ratio[i]):.1f}%)" for i in range(k)]
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            ax.tick_params(labelsize=6)
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(s[:, i], bins=30, color="tab:gray")
            else:
                ax.scatter(s[:, j], s[:, i], s=1, alpha=0.5)
            if i == k - 1:
                ax.set_xlabel(names[j], fontsize=7)
            if j == 0 and i > 0:
                ax.set_ylabel(names[i], fontsize=7)
    fig.suptitle(f"PCA of {s.shape[0]} gauge-fixed generated networks, {tag} (Fig. 9); "
                 "diagonal: histograms", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return ctx.save_figure(fig, f"pca_{tag}")


def _paths_figure(ctx, t, inter, direct, tag) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.3))
    for i in range(inter.shape[0]):
        ax.plot(t.numpy(), inter[i].numpy(), color="tab:blue", alpha=0.6,
                label="interpolated G(z(t))" if i == 0 else None)  # fmt: skip
        ax.plot(t.numpy(), direct[i].numpy(), color="tab:red", alpha=0.6,
                label="direct (1-t)θ0 + tθ1" if i == 0 else None)  # fmt: skip
    ax.set_xlabel("t")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Paths in weight space, {tag} (Fig. 7)")
    ax.legend()
    return ctx.save_figure(fig, f"paths_{tag}")


def _filters_figure(ctx, w: Tensor, tag: str, idx: list[int]) -> str:
    """25 samples of two first-layer filters (gauge-fixed), one 5x5 image each: the most and
    the least diverse filter (Figs. 3, 5)."""
    n = w.shape[0]
    fig, axes = plt.subplots(len(idx), n, figsize=(0.5 * n, 0.6 * len(idx) + 0.3))
    for r, f in enumerate(idx):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(w[c, f, 0].numpy(), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"conv0 filters {idx} (most / least diverse), {n} samples each, {tag} "
                 "(Figs. 3, 5)")  # fmt: skip
    return ctx.save_figure(fig, f"filters_{tag}")


# --- the paper's claims on one source of networks, from its metrics ----------------------------


def accuracy_claim(stats: Mapping[str, Any], threshold: float, what: str, ref: str) -> Claim:
    """Fig. 2: the networks are accurate: their mean test accuracy at or above ``threshold``
    (the paper's histograms sit at 97.5-99 %,
    [`PAPER_ACCURACY`][hyperlab.experiments.generating.analyses.PAPER_ACCURACY])."""
    se = stats["accuracy_std"] / math.sqrt(max(stats["n_networks"], 1))
    level = "the paper's level, Fig. 2" if threshold == PAPER_ACCURACY else "this preset's level"
    return Claim.of(
        f"{what} are accurate (mean test accuracy >= {threshold:.1%})", ref,
        at_least(stats["accuracy_mean"], threshold, name="mean test accuracy", se=se,
                 source=level),
        share_at_least_97_5=stats["share_at_least_97_5"], n_networks=stats["n_networks"],
    )  # fmt: skip


def ensemble_claim(stats: Mapping[str, Any], n_test: int, what: str, ref: str) -> Claim:
    """4.2.2: majority-vote ensembles beat single networks (the ensemble's test-set noise and
    the networks' spread)."""
    ens = stats["ensemble_accuracy"]
    mean_se = stats["accuracy_std"] / math.sqrt(max(stats["n_networks"], 1))
    noise = (binomial_se(ens, n_test), mean_se)
    return Claim.of(f"ensembles of {what} are more accurate than single {what} (their mean)",
                    ref, compare([ens], [stats["accuracy_mean"]], lower=False,
                                 names=("ensemble", "single"), noise=noise),
                    ensemble_size=stats["ensemble_size"])  # fmt: skip


def fgsm_claim(stats: Mapping[str, Any], what: str, ref: str) -> Claim:
    """Fig. 8: transferred to an ensemble, targeted FGSM succeeds less often than on the
    attacked network (success averaged over the perturbations p; binomial noise on the
    attacked images)."""
    fg = stats["fgsm"]
    single, ens = float(np.mean(fg["single"])), float(np.mean(fg["ensemble"]))
    n = int(fg.get("n_images", 1) or 1)
    noise = (binomial_se(ens, n), binomial_se(single, n))
    return Claim.of(f"ensembles of {what} reduce the success of adversarial examples "
                    "(mean over p)", ref, compare([ens], [single], names=("ensemble", "single"),
                                                 noise=noise))  # fmt: skip


def path_minima(stats: Mapping[str, Any], key: str) -> list[float]:
    """Per pair of networks: the lowest accuracy along its path."""
    return [float(min(p)) for p in stats[key]]


def pca_claim(stats: Mapping[str, Any], n: int, d: int, what: str, ref: str,
              baseline: Mapping[str, Any] | None = None, baseline_n: int | None = None
              ) -> Claim:  # fmt: skip
    """Fig. 9: the weights lie on a non-trivial manifold: the top principal component holds
    more than twice the share isotropic noise of the same n and d gives (Marchenko-Pastur),
    and, where the MNF baseline is known, more of its null than MNF's does."""
    pc1 = stats["pca_explained_variance_ratio_all"][0]
    null = isotropic_pc1_share(n, d)
    ev: dict[str, Any] = {"pc1_share": pc1, "isotropic_pc1_share": null, "excess": pc1 / null,
                          "n": n, "d": d}  # fmt: skip
    rule = ("PC1's share > 2x the isotropic null's (same n, d); and, with the MNF baseline "
            "known, its excess over the null > MNF's")  # fmt: skip
    held: bool | None = pc1 > 2 * null
    reason = None
    if baseline is not None and baseline_n:
        mnf_excess = baseline["pca_explained_variance_ratio_all"][0] / isotropic_pc1_share(
            baseline_n, d
        )
        ev["mnf_excess"] = mnf_excess
        held = bool(held and pc1 / null > mnf_excess)
    elif held:
        held, reason = None, "no MNF baseline to compare with (the isotropic null alone passes " \
                             "for any anisotropic noise)"  # fmt: skip
    return Claim(f"{what} lie on a non-trivial manifold, not isotropic noise around one network",
                 ref, held, ev, rule=rule, not_judged=reason)  # fmt: skip
