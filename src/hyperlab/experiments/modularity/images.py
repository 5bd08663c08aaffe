"""Image tasks of the modularity paper: data, the rotation task and models of Fig. 3.

Shared by `.rotation` (Fig. 3), `.embedding_dim_images` (App. 1.2),
`.lr_sensitivity` (App. 1.4) and `.colorization` (App. 1.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hyperlab.data import load_cifar10, load_fashion_mnist, load_mnist, rotation_batch
from hyperlab.experiments.base import Result, RunContext
from hyperlab.experiments.claims import NOISE_SE, Claim, binomial_se
from hyperlab.experiments.config import param
from hyperlab.experiments.evaluate import evaluate_batches
from hyperlab.experiments.figures import curve_figure, epoch_figure
from hyperlab.experiments.modularity.summary import (
    comparison_claims,
    conditioning_rows,
    curve_panels,
    pair_rows,
)
from hyperlab.experiments.modularity.sweep import Conventions, Task, tune_notes
from hyperlab.hypernet import EmbeddingModel, HyperModel
from hyperlab.primary import MLP

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}


@dataclass(frozen=True)
class ImageData(Conventions):
    """Which image dataset, how much of it, the widths of f, e and g (Sec. 5), and the
    modelling conventions (inits, biases: `Conventions`)."""

    dataset: str = param("mnist", "image dataset", choices=tuple(LOADERS))
    download: bool = param(False, "download missing data files (else they must be in "
                           "--data-dir)")  # fmt: skip
    width: int | None = param(None, "hidden width d of f and e (None: 50 for MNIST / "
                              "Fashion-MNIST, 100 for CIFAR-10, Sec. 5)", min=1)  # fmt: skip
    g_hidden: int = param(10, "hidden width of g and q", min=1)
    n_train: int | None = param(None, "training images (None: the whole training set)", min=1)
    n_test: int | None = param(None, "test images (None: the whole test set)", min=1)


def images(ctx: RunContext[ImageData], split: str, n: int | None) -> tuple[Tensor, Tensor]:
    """The first ``n`` images (uint8) and labels of ``config.dataset``'s ``split``."""
    cfg = ctx.config
    images, labels = LOADERS[cfg.dataset](split, data_dir=ctx.data_dir, download=cfg.download)
    if n is not None:
        images, labels = images[:n], labels[:n]
    return images, labels


def width(cfg: ImageData) -> int:
    """Hidden width d of f and e: 50 for MNIST-like data, 100 for CIFAR-10 (Sec. 5)."""
    if cfg.width:
        return cfg.width
    return 100 if cfg.dataset == "cifar10" else 50


def image_dims(cfg: ImageData) -> int:
    """Pixels times channels of one image."""
    c, h, w = (3, 32, 32) if cfg.dataset == "cifar10" else (1, 28, 28)
    return c * h * w


def _nll_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    return nn.functional.cross_entropy(model(batch["x"], batch["cond"]), batch["y"])


def classification_scores(
    model: nn.Module, split: Mapping[str, Tensor], device: torch.device
) -> dict[str, float]:
    """Test error (1 - accuracy) and mean NLL of ``model(x, cond)`` over a split."""

    def totals(logits: Tensor, b: Mapping[str, Tensor]) -> dict[str, Any]:
        return {"wrong": int((logits.argmax(-1) != b["y"]).sum()),
                "nll": nn.functional.cross_entropy(logits, b["y"], reduction="sum")}  # fmt: skip

    sums = evaluate_batches(model, split, totals, device=device, batch=1000)
    n = split["y"].shape[0]
    return {"error": sums["wrong"] / n, "nll": sums["nll"] / n}


def rotation_task(ctx: RunContext[ImageData], s: int) -> Task:
    """Rotation prediction: I = image (f's input), x = I rotated by a ~ U[0, 360) (g's
    input), 12 classes. Fresh angles every batch; fixed angles for validation and test."""
    cfg = ctx.config
    train, _ = images(ctx, "train", cfg.n_train)
    test, _ = images(ctx, "test", cfg.n_test)

    def transform(batch: dict[str, Tensor], gen: torch.Generator) -> dict[str, Tensor]:
        out = rotation_batch(batch["image"], gen)
        return {k: out[k].to(batch["image"].device) for k in ("x", "cond", "y")}

    def freeze(raw: dict[str, Tensor], tag: str) -> dict[str, Tensor]:
        out = rotation_batch(raw["image"], ctx.generator("angles", tag, s))
        return {k: out[k] for k in ("x", "cond", "y")}

    return Task(
        data={"train": {"image": train}, "test": freeze({"image": test}, "test")},
        loss=_nll_loss,
        evaluate=lambda m, split: classification_scores(m, split, ctx.device),
        splits={"": "test"},
        primary="error",
        transform=transform,
        freeze=freeze,
        track={"test": "test"},
    )


def rotation_builders(
    cfg: ImageData,
    *,
    embedding_dim: Callable[[Any], int] | None = None,
    f_hidden: Callable[[Any], list[int]] | None = None,
    e_hidden: Callable[[Any], list[int]] | None = None,
) -> dict[str, Callable[[Any, torch.Generator], nn.Module]]:
    """Fig. 3 models (notes A.2). g: d_x-10-12; f: d_I-d-...-N_g with k layers; e: same
    shape with output E = 10 d_x + 10 (Sec. 5 and the authors' code); q: (d_x + E)-10-12.
    Biases and f's head init from the config (authors' code: none in g, PyTorch init)."""
    d = image_dims(cfg)
    w = width(cfg)
    gh, n_cls = cfg.g_hidden, 12
    f_hidden = f_hidden or (lambda k: [w] * (int(k) - 1))
    e_hidden = e_hidden or f_hidden
    embedding_dim = embedding_dim or (lambda k: d * gh + gh)

    def hyper(v: Any, gen: torch.Generator) -> nn.Module:
        g = MLP([d, gh, n_cls], bias=cfg.bias("g"))
        return HyperModel(g, d, f_hidden(v), bias=cfg.bias("f"), init=cfg.init, generator=gen)

    def emb(v: Any, gen: torch.Generator) -> nn.Module:
        return EmbeddingModel(d, d, embedding_dim(v), e_hidden(v), [gh], n_cls,
                              bias=cfg.bias("e"), q_bias=cfg.bias("q"), generator=gen)  # fmt: skip

    return {"hypernetwork": hyper, "embedding": emb}


#: rotation prediction's chance error (12 classes)
CHANCE_ERROR = 11 / 12


def rotation_claims(cfg: ImageData, values: list, metrics: Mapping, *, what: str,
                    paper_ref: str, h_improves: bool, e_flat: bool) -> list[Claim]:  # fmt: skip
    """Fig. 3's sentences on the per-seed mean of the last three epochs' test error (single
    epochs move by ±0.02); the embedding "trained" where its error is below chance by more
    than the test set's noise."""
    n = cfg.n_test or 10_000
    below = CHANCE_ERROR - NOISE_SE * binomial_se(CHANCE_ERROR, n)
    ok = [bool(v is not None and math.isfinite(v) and v < below)
          for v in metrics["embedding_error_last3"]]  # fmt: skip
    return comparison_claims(values, metrics, "error_last3", what=what, paper_ref=paper_ref,
                             score="test error (mean of the last 3 epochs)", trained=ok,
                             trained_rule=f"test error below chance {CHANCE_ERROR:.3f} by "
                             f"{NOISE_SE:g} binomial SE ({n} test images)",
                             h_improves=h_improves, e_flat=e_flat)  # fmt: skip


def rotation_result(ctx: RunContext[ImageData], values: list, label: str, metrics: dict,
                    table: Mapping, *, stem: str, xlabel: str, title: str, claims: list[Claim],
                    logx: bool = False) -> Result:  # fmt: skip
    """The figure, the training curves and the rows of a rotation sweep, with its claims."""
    fig = curve_figure(
        ctx, stem, values,
        {"hypernetwork": table["hypernetwork_error_last3"],
         "embedding": table["embedding_error_last3"]},
        xlabel=xlabel, ylabel="test error (mean of the last 3 epochs)", title=title, logx=logx,
    )  # fmt: skip
    panels = curve_panels(label, values, metrics, {"error_test": ""})
    curves = epoch_figure(ctx, f"{stem}_curves", panels, ylabel="test error",
                          title=f"{title}: test error per epoch")  # fmt: skip
    comparison = pair_rows(label, values, metrics, "error_last3")
    comparison += pair_rows(label, values, metrics, "error")
    comparison += conditioning_rows(label, values, metrics)
    return Result(metrics=metrics, claims=claims, figures=[fig, curves], comparison=comparison,
                  notes=tune_notes(metrics))  # fmt: skip
