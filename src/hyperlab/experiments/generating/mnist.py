"""Sec. 4.2, Figs. 2-9: a generator of all 20,018 weights of the MNIST target network (App. A.6)
trained on λ · CE − Ĥ(gauge-fixed weights) (Eq. 3-4; L1 Kozachenko-Leonenko with d = d_z).

Accuracy histograms of generated networks for several λ, majority-vote ensembles, FGSM attacks
on one network and on an ensemble, PCA of generated weights, interpolated vs direct paths and
first-layer filters (`.analyses`).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.experiments.claims import Claim, binomial_se, compare
from hyperlab.experiments.config import ConfigError, param
from hyperlab.experiments.figures import epoch_figure
from hyperlab.experiments.generating.analyses import (
    ANALYSIS_QUICK,
    ANALYSIS_SIZES,
    ANALYSIS_TINY,
    AnalysisConfig,
    accuracy_claim,
    config_key,
    ensemble_claim,
    fgsm_claim,
    generate,
    headline,
    hist_figure,
    mnist_data,
    path_minima,
    pca_claim,
    population_stats,
    run_analyses,
    summary_rows,
)
from hyperlab.experiments.generating.mnf_baseline import MNFConfig, train_mnf
from hyperlab.experiments.papers import GENERATING
from hyperlab.experiments.scale import sizes_of
from hyperlab.generative import GenerativeHyperNetwork, generative_loss
from hyperlab.generative.analysis import accuracies, predict_logits
from hyperlab.generative.model import recalibrate_batch_norm
from hyperlab.primary import ConvNet
from hyperlab.runtime import keep_freed_memory

PAPER_REF = "Sec. 4.2"


@dataclass(frozen=True)
class GeneratingMnistConfig(AnalysisConfig):
    """Sec. 4.2 / notes C.2-C.6: the generator, the loss and the released code's schedule."""

    extractor_hidden: list[int] = param([300, 300], "hidden sizes of the extractor", min=1)
    code_size: int = param(15, "size of each filter code", min=1)
    bn_offset_scale: float = param(1.0, "1 = the paper; >1 raises the BN offsets' effective lr",
                                   positive=True)  # fmt: skip
    lambdas: list[float] = param([1e3, 3e6], "λ values trained (1e3: released code; 3e6: the "
                                 "alternative in its comment)", positive=True)  # fmt: skip
    main_lambda: float = param(1e3, "the λ whose networks get every analysis", positive=True)
    estimator: str = param("authors", "entropy estimator of the loss",
                           choices=("authors", "kl"))  # fmt: skip
    authors_sum_quirk: bool = param(False, "reproduce the released code's gauge-fix sum quirk")
    target_dtype: str = param("float32", "the target networks' forward and backward: "
                              "float32, or bfloat16 autocast (fast with AMX / AVX-512 BF16: "
                              "benchmarks/generative_step.py; generator, CE and entropy stay "
                              "float32)",
                              choices=("float32", "bfloat16"))  # fmt: skip
    noise_batch: int = param(32, "noise samples (generated networks) per step", min=1)
    images_per_noise: int = param(32, "images per generated network per step", min=1)
    lr: float = param(3e-4, "Adam learning rate", positive=True)
    lr_decay: float = param(0.99998, "learning-rate decay per step", positive=True)
    epochs: int = param(250, "epochs (54 steps each at 32 x 32: 13.5k steps; the paper's "
                        "checkpoints: 11k-18k)", min=1)  # fmt: skip
    precise_bn: bool = param(False, "recompute batch-norm averages on fresh noise after "
                             "training (the released code keeps its EMA)")  # fmt: skip
    mnf_results: str | None = param(
        None,
        "a generating-mnf-baseline results.json whose "
        "statistics the diversity and PCA claims compare with "
        "(None: only an MNF trained in this run, mnf_epochs)",
    )
    mnf_epochs: int = param(0, "also train the MNF baseline (generating-mnf-baseline's "
                            "settings) this many epochs and compare accuracy and diversity "
                            "in this run (0: no)", min=0)  # fmt: skip

    def validate(self) -> None:
        if self.main_lambda not in self.lambdas:
            raise ConfigError(f"main_lambda: {self.main_lambda} must be one of lambdas "
                              f"{self.lambdas}")  # fmt: skip


def warn_small_noise_batch(cfg: GeneratingMnistConfig) -> None:
    """Warn when fewer than 32 noise samples meet λ ≥ 1e4 (checked when a run starts)."""
    big = [lam for lam in cfg.lambdas if lam >= 1e4]
    if cfg.noise_batch < 32 and big:
        warnings.warn(
            f"noise_batch={cfg.noise_batch} < 32 with lambdas {big} >= 1e4: the entropy "
            "estimate (nearest neighbours among the batch's networks) and the generator's "
            "batch statistics are unreliable there; at 8 noise samples λ = 1e5 stayed at "
            "chance for 600 steps in an earlier session's runs",
            UserWarning,
            stacklevel=2,
        )


#: Settings that shape a trained generator but are not in TrainConfig (checkpoint key).
_MODEL_KEYS = ("noise_dim", "extractor_hidden", "code_size", "bn_offset_scale", "estimator",
               "authors_sum_quirk", "noise_batch")  # fmt: skip


class _Loss:
    """fit() loss: one minibatch of B·G images -> B generated networks, G images each."""

    def __init__(self, lam: float, noise_batch: int, estimator: str, quirk: bool,
                 target_dtype: torch.dtype | None = None):  # fmt: skip
        self.lam, self.b, self.estimator, self.quirk = lam, noise_batch, estimator, quirk
        self.target_dtype = target_dtype
        self.sums: dict[str, float] = {}
        self.steps = 0

    def epoch_means(self, model=None) -> dict[str, float]:
        """fit()'s per-epoch ``evaluate``: the epoch's mean training CE, entropy estimate and
        batch accuracy (what the released code logs), then start the next epoch afresh."""
        out = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
        self.sums, self.steps = {}, 0
        return out

    def __call__(self, model, batch: Mapping[str, Tensor]) -> Tensor:
        x, y = batch["x"], batch["y"]
        g = x.shape[0] // self.b
        if g == 0:
            raise ValueError(f"batch of {x.shape[0]} images is smaller than the noise batch")
        x = (x[: self.b * g].float() / 255.0).reshape(self.b, g, 1, 28, 28)
        y = y[: self.b * g].reshape(self.b, g)
        loss, parts = generative_loss(model, x, y, lam=self.lam, estimator=self.estimator,
                                      authors_sum_quirk=self.quirk,
                                      target_dtype=self.target_dtype)  # fmt: skip
        for k, v in parts.items():
            key = "train_accuracy" if k == "accuracy" else k
            self.sums[key] = self.sums.get(key, 0.0) + float(v)
        self.steps += 1
        return loss


def train_generator(ctx: RunContext[GeneratingMnistConfig], data: Mapping[str, Tensor], lam: float):
    """Train the generator at one λ (checkpointed per λ and model settings)."""
    cfg = ctx.config
    gen = GenerativeHyperNetwork(
        ConvNet(), cfg.noise_dim, extractor_hidden=cfg.extractor_hidden,
        code_size=cfg.code_size, bn_offset_scale=cfg.bn_offset_scale,
        generator=ctx.generator("init"),
    )  # fmt: skip
    batch = cfg.noise_batch * cfg.images_per_noise
    t0 = time.perf_counter()
    bf16 = cfg.target_dtype == "bfloat16"
    loss = _Loss(lam, cfg.noise_batch, cfg.estimator, cfg.authors_sum_quirk,
                 torch.bfloat16 if bf16 else None)  # fmt: skip
    keys = _MODEL_KEYS + (("target_dtype",) if bf16 else ())  # float32 keeps its old key
    history = ctx.fit(
        gen, loss, {"x": data["train_x"], "y": data["train_y"]},
        key=(f"lambda_{lam:g}-{config_key(cfg, keys)}",), seed_key=("train", lam),
        epochs=cfg.epochs, batch_size=batch, lr=cfg.lr, optimizer="adam",
        lr_decay=cfg.lr_decay, progress=True, desc=f"generator λ={lam:g}",
        evaluate=loss.epoch_means,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    if cfg.precise_bn:
        recalibrate_batch_norm(gen, generator=ctx.generator("precise-bn", lam))
    gen.eval()
    steps = len(history) * math.ceil(len(data["train_x"]) / batch)
    return gen, {"train_seconds": seconds, "steps": steps, "history": history.records}


def training_figure(ctx: RunContext[GeneratingMnistConfig], training: Mapping[str, Any]) -> str:
    """Training curves per λ: mean CE, entropy estimate and batch accuracy of each epoch."""
    panels = {
        title: {f"λ = {lam}": [[r.get(key, math.nan) for r in info["history"]]]
                for lam, info in training.items()}
        for title, key in (("cross-entropy", "ce"), ("entropy estimate Ĥ", "entropy"),
                           ("training batch accuracy", "train_accuracy"))
    }  # fmt: skip
    return epoch_figure(ctx, "training_curves", panels, ylabel="epoch mean",
                        title="generator training (means over each epoch's steps)",
                        sharey=False)  # fmt: skip


def _hist_label(tag: str) -> str:
    return "MNF" if tag == "mnf" else f"λ = {tag[7:]}"


def mnf_comparison(
    ctx: RunContext[GeneratingMnistConfig], data: Mapping[str, Tensor], hist: dict
) -> dict[str, Any]:
    """The MNF baseline trained ``mnf_epochs`` epochs in this run, through the same accuracy
    and diversity statistics as the generator (Fig. 2(c), Fig. 5)."""
    mnf, training = train_mnf(ctx, data, MNFConfig(epochs=ctx.config.mnf_epochs))
    stats, acc, _ = population_stats(ctx, mnf, data, "mnf")
    hist["mnf"] = acc.tolist()
    return stats | {"training": training}


def compute(ctx: RunContext[GeneratingMnistConfig]) -> dict[str, Any]:
    """Train at every λ; full analyses for the main λ, histograms for the others."""
    cfg = ctx.config
    data = mnist_data(ctx)
    metrics: dict[str, Any] = {"per_lambda": {}, "training": {}}
    hist: dict[str, list[float]] = {}
    figures: list[str] = []
    main: dict[str, Any] = {}
    for lam in cfg.lambdas:
        gen, info = train_generator(ctx, data, lam)
        metrics["training"][f"{lam:g}"] = info
        tag = f"lambda_{lam:g}"
        if lam == cfg.main_lambda:
            figures += run_analyses(ctx, gen, data, tag, hist, metrics)
            main = metrics.pop(tag)
        else:  # histogram only
            _, raw, _ = generate(gen, cfg.ensemble_size * cfg.n_ensembles,
                                 ctx.generator("eval", tag))  # fmt: skip
            acc = accuracies(predict_logits(gen.primary, raw, data["test_x"]), data["test_y"])
            hist[tag] = acc.tolist()
        a = torch.tensor(hist[tag])
        metrics["per_lambda"][f"{lam:g}"] = {
            "accuracy_mean": a.mean().item(),
            "accuracy_std": a.std().item(),
            "accuracy_min": a.min().item(),
            "accuracy_max": a.max().item(),
            "accuracies": hist[tag],
        }
    if cfg.mnf_epochs:
        metrics["mnf"] = mnf_comparison(ctx, data, hist)
    figures.insert(0, hist_figure(ctx, {_hist_label(k): v for k, v in hist.items()}))
    figures.insert(1, training_figure(ctx, metrics["training"]))
    metrics.update(headline(main))
    metrics["main_lambda"] = cfg.main_lambda
    metrics["analyses"] = main
    return {"metrics": metrics, "figures": figures}


#: Diversity statistics shown beside MNF's: (key, label).
_DIVERSITY = (
    ("conv0_filter_diversity_min", "least diverse conv0 filter (Fig. 5)"),
    ("conv0_filter_diversity_median", "median conv0 filter diversity"),
    ("prediction_disagreement", "prediction disagreement (pairs)"),
    ("wrong_prediction_iou", "wrong-prediction IoU (pairs; lower = more diverse)"),
    ("gauge_fixed_pairwise_l2_over_norm", "gauge-fixed pairwise L2 / mean norm"),
)


def mnf_claims(ours: Mapping[str, Any], mnf: Mapping[str, Any] | None, source: str,
               n_test: int | None = None) -> list[Claim]:  # fmt: skip
    """Sec. 4.2.2: generated networks are more diverse than MNF's, in weights (the least
    diverse first-layer filter, Fig. 5) and in predictions (disagreement between pairs, judged
    beyond the binomial noise of a rate on ``n_test`` test images)."""
    texts = (
        "the generator's least diverse first-layer filter is more diverse than MNF's "
        "(MNF: very low diversity in some filters)",
        "generated networks disagree with each other more than MNF's networks do",
    )
    keys = ("conv0_filter_diversity_min", "prediction_disagreement")
    refs = ("Sec. 4.2.2, Fig. 5", "Sec. 4.2.2")
    if mnf is None:
        why = (
            "no MNF baseline to compare with: --set mnf_epochs=N trains one in the run, "
            "mnf_results=PATH reads a generating-mnf-baseline record"
        )
        return [
            Claim(
                t, r, None, {"generator": ours[k]}, rule=f"generator's {k} > MNF's", not_judged=why
            )
            for t, k, r in zip(texts, keys, refs, strict=True)
        ]
    k0, k1 = keys
    filters = Claim(texts[0], refs[0], ours[k0] > mnf[k0],
                    {"generator": ours[k0], "mnf": mnf[k0], "mnf_source": source},
                    rule=f"generator's {k0} > MNF's (a minimum over filters: no noise model; "
                    "the paper's contrast is orders of magnitude)")  # fmt: skip
    n = int(n_test or 10_000)
    a, b = float(ours[k1]), float(mnf[k1])
    v = compare([a], [b], lower=False, names=("generator", "MNF"),
                noise=(binomial_se(a, n), binomial_se(b, n)))  # fmt: skip
    rates = Claim.of(texts[1], refs[1], v, mnf_source=source, test_images=n)
    return [filters, rates]


def load_mnf(cfg: GeneratingMnistConfig, metrics: Mapping[str, Any]
             ) -> tuple[Mapping[str, Any] | None, int | None, str]:  # fmt: skip
    """The MNF baseline's statistics to compare with: trained in this run, else read from
    ``mnf_results`` (a generating-mnf-baseline results.json); with that record's n_pca."""
    if "mnf" in metrics:
        return metrics["mnf"], None, "trained in this run"
    if not cfg.mnf_results:
        return None, None, ""
    path = Path(cfg.mnf_results)
    try:
        record = json.loads(path.read_text())
        stats = record["metrics"]["analyses"]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"mnf_results: {path} is not a readable generating-mnf-baseline "
                          f"record ({type(e).__name__}: {e})") from None  # fmt: skip
    if record.get("experiment") != "generating-mnf-baseline":
        raise ConfigError(f"mnf_results: {path} holds {record.get('experiment')!r}, expected "
                          "generating-mnf-baseline")  # fmt: skip
    return stats, int(record["config"]["n_pca"]), str(path)


#: the weights the PCA and the null see: every weight of the paper's target (App. A.6)
TARGET_WEIGHTS = ConvNet().layout.numel


def judge(cfg: GeneratingMnistConfig, metrics: dict[str, Any]) -> list[Claim]:
    """Sec. 4.2's claims on the main λ's networks: accurate (the paper's level), ensembles
    better, ensembles resist FGSM, the direct path drops (Fig. 7), PCA structure (Fig. 9) and
    diversity against MNF."""
    main = metrics["analyses"]
    mnf, mnf_n_pca, source = load_mnf(cfg, metrics)
    what = "generated networks"
    n_path = cfg.path_images
    direct, inter = (
        path_minima(main, "path_direct_accuracy"),
        path_minima(main, "path_interpolated_accuracy"),
    )
    noise = (binomial_se(float(np.mean(direct)), n_path), binomial_se(float(np.mean(inter)),
                                                                      n_path))  # fmt: skip
    claims = [
        accuracy_claim(main, cfg.accuracy_claim_threshold, what, "Fig. 2"),
        ensemble_claim(main, cfg.n_test, what, "Sec. 4.2.2"),
        fgsm_claim(main, what, "Fig. 8, Sec. 4.2.3"),
        Claim.of("the direct path between two generated networks has lower accuracy than the "
                 "interpolated path G(z(t))", "Fig. 7",
                 compare(direct, inter, names=("direct", "interpolated"), noise=noise,
                         paired=True)),
        pca_claim(main, cfg.n_pca, TARGET_WEIGHTS, "generated weights", "Fig. 9",
                  baseline=mnf if mnf_n_pca else None, baseline_n=mnf_n_pca),
    ]  # fmt: skip
    return claims + mnf_claims(main, mnf, source, cfg.n_test)


def mnf_rows(ours: Mapping[str, Any], mnf: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Comparison rows: the MNF baseline of this run beside the generator."""
    rows = [
        (
            "MNF (this run): accuracy, ensemble",
            "Fig. 2(c); 4.2.2",
            f"{mnf['accuracy_mean']:.2%}, {mnf['ensemble_accuracy']:.2%} "
            f"(generator {ours['accuracy_mean']:.2%}, {ours['ensemble_accuracy']:.2%})",
        )
    ]
    for key, label in _DIVERSITY:
        rows.append((f"{label}: generator / MNF", "-", f"{ours[key]:.4f} / {mnf[key]:.4f}"))
    return rows


def summarise(ctx: RunContext[GeneratingMnistConfig], metrics: dict[str, Any]) -> Result:
    """The paper's claims on accuracy, diversity, ensembles, FGSM, paths and PCA."""
    cfg = ctx.config
    main = metrics["analyses"]
    claims = judge(cfg, metrics)
    comparison = [(
        "accuracy of generated nets", "histograms ~97.5-99 % (Fig. 2, axis 97-99.1 %)",
        f"{main['accuracy_mean']:.2%} ± {main['accuracy_std']:.2%} "
        f"(min {main['accuracy_min']:.2%}, max {main['accuracy_max']:.2%}; "
        f"{main['share_at_least_97_5']:.1%} of {main['n_networks']} at >= 97.5 %)",
    )]  # fmt: skip
    comparison += summary_rows(main, {
        "ensemble": "higher than typical single nets (4.2.2; value not in our text copy)",
        "pca": "prominent low-dimensional structure (Fig. 9)", "fgsm": "ensemble lower (Fig. 8)",
        "paths": "direct path drops (Fig. 7)"})  # fmt: skip
    mnf, _, _ = load_mnf(cfg, metrics)
    if mnf is not None:
        comparison += mnf_rows(main, mnf)
    for lam in cfg.lambdas:
        pl = metrics["per_lambda"][f"{lam:g}"]
        comparison.append(
            (
                f"accuracy at λ = {lam:g}",
                "-",
                f"{pl['accuracy_mean']:.2%} ± {pl['accuracy_std']:.2%}",
            )
        )
    notes = [
        f"trained {metrics['training'][f'{cfg.main_lambda:g}']['steps']} steps of "
        f"{cfg.noise_batch} noise samples x {cfg.images_per_noise} images",
        "conv features are flattened channel-major (C, H, W), TF's order is (H, W, C): the same "
        "function class; only the positions of fc0's weights differ",
    ]
    if cfg.precise_bn:
        notes.append("batch-norm averages recomputed on fresh noise after training (precise BN); "
                     "the released code evaluates with its EMA (decay 0.98)")  # fmt: skip
    return Result(metrics, claims, [], comparison, notes)


def run(ctx: RunContext[GeneratingMnistConfig]) -> Result:
    """compute (training, analyses and their figures) → summarise."""
    warn_small_noise_batch(ctx.config)
    with keep_freed_memory():  # large CPU tensors every step: reuse warm pages
        raw = compute(ctx)
    result = summarise(ctx, raw["metrics"])
    result.figures = raw["figures"]
    return result


#: The quick preset (sized for 2 CPU cores; its large grouped convs gain from 2 threads) and
#: the tiny one (tests).
QUICK = ANALYSIS_QUICK | {"lambdas": [1e3], "noise_batch": 32, "images_per_noise": 16,
                          "n_train": 60_000, "n_test": 10_000, "lr": 3e-4, "lr_decay": 0.99998,
                          "epochs": 11,  # 117 steps/epoch: ~1,290 steps of 32 x 16
                          "precise_bn": True, "mnf_epochs": 1,
                          "cpu_threads": 2}  # fmt: skip
TINY = QUICK | ANALYSIS_TINY | {"lambdas": [1e3, 1e5], "noise_batch": 4, "images_per_noise": 16,
                                "epochs": 2, "cpu_threads": 1}  # fmt: skip

register(
    Experiment(
        name="generating-mnist",
        paper=GENERATING,
        reproduces="Figs. 2-9 (Sec. 4.2)",
        summary="Generator of all 20,018 weights of the MNIST target (App. A.6) trained on "
        "λ·CE − Ĥ(gauge-fixed weights); accuracy histograms, majority-vote ensembles, FGSM vs one "
        "network and an ensemble, PCA of weights, interpolated vs direct paths, filters.",
        config_class=GeneratingMnistConfig,
        paper_sizes=sizes_of(
            GeneratingMnistConfig,
            "lambdas",
            "epochs",
            "noise_batch",
            "images_per_noise",
            *ANALYSIS_SIZES,
        ),
        presets={"full": {}, "quick": QUICK, "tiny": TINY},
        run=run,
        judge=judge,
        selects=("mnf_results", "accuracy_claim_threshold"),  # what the claims use, not trained
        estimate=lambda c: (
            f"{len(c.lambdas)} generator(s) x {c.epochs} epochs of {c.noise_batch} x "
            f"{c.images_per_noise} images per step (about "
            f"{c.epochs * math.ceil(c.n_train / (c.noise_batch * c.images_per_noise)):,} steps"
            " each)"
        ),
        paper_reference={
            "figure": "Fig. 2 histograms (axis 97-99.1 %), Fig. 3 filters, Fig. 7 paths, Fig. 8 "
            "adversarial success vs p, Fig. 9 PCA; 4.2.2: 20 ensembles of 200 networks",
            "claims": [
                "generated networks are accurate and diverse",
                "majority-vote ensembles beat typical single generated networks",
                "ensembles reduce adversarial success",
                "the direct path between generated networks loses accuracy, the interpolated "
                "path does not",
                "weights lie on a non-trivial manifold (PCA)",
            ],
            "settings": "notes C.2-C.6: d_z = 300, codes 15, Adam 3e-4 x 0.99998/step, "
            "32 noise x 32 images, λ = 1e3, L1 Kozachenko-Leonenko with d = d_z",
        },
    )
)
