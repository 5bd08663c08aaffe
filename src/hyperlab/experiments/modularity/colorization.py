"""Appendix 1.3: colorization. Predict a pixel's RGB from its position and gray value (g, q)
given the gray image I (f, e); per-pixel colour MSE as the depth of f and e grows.

Our design (the authors' code has only a stub): an MNIST digit of class c is painted in colour
palette[c], so the colour must be inferred from I; g = 3-16-16-3, E = N_g.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hyperlab.data import colorization_batch
from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.experiments.claims import Claim
from hyperlab.experiments.config import param
from hyperlab.experiments.evaluate import evaluate_batches
from hyperlab.experiments.figures import curve_figure
from hyperlab.experiments.modularity.images import ImageData, images, width
from hyperlab.experiments.modularity.rotation import TINY
from hyperlab.experiments.modularity.summary import comparison_claims, pair_rows
from hyperlab.experiments.modularity.sweep import (
    NETWORKS,
    Task,
    TunedSweepConfig,
    counts_recorder,
    sweep,
    tune_notes,
)
from hyperlab.experiments.papers import MODULARITY
from hyperlab.experiments.scale import UNSTATED, sizes_of
from hyperlab.hypernet import EmbeddingModel, HyperModel
from hyperlab.primary import MLP

PAPER_REF = "App. 1.3"

# Digit class -> colour, so the colour of a grayscale digit is a function of the image I.
_PALETTE = torch.tensor(
    [
        [1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.4, 1.0], [1.0, 1.0, 0.2], [1.0, 0.2, 1.0],
        [0.2, 1.0, 1.0], [1.0, 0.6, 0.2], [0.6, 0.2, 1.0], [0.6, 1.0, 0.6], [1.0, 1.0, 1.0],
    ]
)  # fmt: skip


@dataclass(frozen=True)
class ColorizationConfig(ImageData, TunedSweepConfig):
    """App. 1.3: pixels per image, g's width, depths k of f and e."""

    g_hidden: int = param(16, "hidden width of g (3-g_hidden-g_hidden-3) and q", min=1)
    biases: list[str] = param(["f", "e", "g", "q"], "networks with bias terms, of f, e, g, q "
                              "(no code released; g of 3 inputs needs its biases)",
                              choices=NETWORKS, nonempty=False)  # fmt: skip
    pixels_per_image: int = param(64, "pixels sampled per image per step", min=1)
    depths: list[int] = param(list(range(2, 10)), "numbers of layers k of f and e", min=2)


def _rgb_images(ctx: RunContext[ColorizationConfig], split: str, n: int | None) -> Tensor:
    imgs, labels = images(ctx, split, n)
    if imgs.ndim == 4:  # CIFAR-10: already RGB
        return imgs
    # MNIST-like: paint each digit by its class (uint8, to keep 60k images small).
    rgb = imgs.unsqueeze(1).float() * _PALETTE[labels].view(-1, 3, 1, 1)
    return rgb.round_().clamp_(0, 255).to(torch.uint8)


def _pixel_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    return nn.functional.mse_loss(model(batch["x"], batch["cond"]), batch["y"])


def pixel_mse(model: nn.Module, split: Mapping[str, Tensor], device: torch.device) -> float:
    """Mean squared colour error per channel over a split."""
    sums = evaluate_batches(
        model, split, lambda pred, b: {"sq": (pred - b["y"]).pow(2).sum(), "n": b["y"].numel()},
        device=device, batch=500,
    )  # fmt: skip
    return sums["sq"] / sums["n"]


def colorization_task(ctx: RunContext[ColorizationConfig], s: int) -> Task:
    """Seed ``s``'s data: painted images; fresh pixels every batch, fixed ones for testing."""
    cfg = ctx.config
    train = _rgb_images(ctx, "train", cfg.n_train)
    test = _rgb_images(ctx, "test", cfg.n_test)
    p = cfg.pixels_per_image

    def transform(batch: dict[str, Tensor], gen: torch.Generator) -> dict[str, Tensor]:
        out = colorization_batch(batch["rgb"], gen, n_pixels=p, flatten=False)
        return {k: out[k].to(batch["rgb"].device) for k in ("x", "cond", "y")}

    def freeze(raw: dict[str, Tensor], tag: str) -> dict[str, Tensor]:
        out = colorization_batch(raw["rgb"], ctx.generator("pixels", tag, s), n_pixels=p,
                                 flatten=False)  # fmt: skip
        return {k: out[k] for k in ("x", "cond", "y")}

    return Task(
        data={"train": {"rgb": train}, "test": freeze({"rgb": test}, "test")},
        loss=_pixel_loss,
        evaluate=lambda m, split: {"mse": pixel_mse(m, split, ctx.device)},
        splits={"": "test"},
        primary="mse",
        transform=transform,
        freeze=freeze,
    )


def run(ctx: RunContext[ColorizationConfig]) -> Result:
    """Compute the sweep over k, then summarise and draw the appendix figure."""
    cfg = ctx.config
    depths = list(cfg.depths)
    h, w = (32, 32) if cfg.dataset == "cifar10" else (28, 28)
    d_i, f_width, gh = h * w, width(cfg), cfg.g_hidden
    g_sizes = [3, gh, gh, 3]
    n_g = MLP(g_sizes, bias=cfg.bias("g")).layout.numel

    def hyper(k: int, gen: torch.Generator) -> nn.Module:
        g = MLP(g_sizes, bias=cfg.bias("g"))
        return HyperModel(g, d_i, [f_width] * (k - 1), bias=cfg.bias("f"), init=cfg.init,
                          generator=gen)  # fmt: skip

    def emb(k: int, gen: torch.Generator) -> nn.Module:
        return EmbeddingModel(3, d_i, n_g, [f_width] * (k - 1), [gh, gh], 3, bias=cfg.bias("e"),
                              q_bias=cfg.bias("q"), generator=gen)  # fmt: skip

    counts: list[dict] = []
    metrics, table = sweep(
        ctx,
        conventions=cfg,
        tuning=cfg,
        values=depths,
        make_task=lambda s: colorization_task(ctx, s),
        builders={"hypernetwork": hyper, "embedding": emb},
        on_model=counts_recorder(counts, "k"),
    )
    metrics = {"depths": depths, "dataset": cfg.dataset, **metrics, "parameter_counts": counts}
    claims = judge(cfg, metrics)
    fig = curve_figure(
        ctx, f"figA_colorization_{cfg.dataset}", depths,
        {"hypernetwork": table["hypernetwork_mse"], "embedding": table["embedding_mse"]},
        xlabel="number of layers k of f / e", ylabel="test per-pixel RGB MSE", logy=True,
        title=f"Appendix: colorization, {cfg.dataset} ({ctx.preset})",
    )  # fmt: skip
    return Result(metrics=metrics, claims=claims, figures=[fig],
                  comparison=pair_rows("k", depths, metrics, "mse"),
                  notes=tune_notes(metrics))  # fmt: skip


def judge(cfg: ColorizationConfig, metrics: dict) -> list[Claim]:
    """App. 1.3: the HN beats the embedding at every depth and improves as f deepens."""
    return comparison_claims(metrics["depths"], metrics, "mse", what="depth k of f / e",
                             score="pixel MSE", paper_ref=PAPER_REF, e_flat=False)  # fmt: skip


register(
    Experiment(
        name="modularity-colorization",
        paper=MODULARITY,
        reproduces="App. 1.3",
        summary="Colorization: predict a pixel's RGB from its position and gray value (g, q) "
        "given the gray image I (f, e); MNIST digits painted by class, or CIFAR-10.",
        config_class=ColorizationConfig,
        paper_sizes=sizes_of(ColorizationConfig, "depths", "epochs", "n_train", "n_test")
        | {"dataset": ("mnist", "cifar10"), "seeds": UNSTATED},  # our design (App. 1.3)
        presets={
            "full": {},
            "quick": {
                "n_train": 10_000,
                "n_test": 1_000,
                "epochs": 3,
                "seeds": 2,
                "depths": [2, 4, 6],
            },
            "tiny": TINY | {"pixels_per_image": 8, "depths": [2, 3]},
        },  # fmt: skip
        run=run,
        judge=judge,
        selects=("seeds", "depths"),
        estimate=lambda c: f"{2 * c.seeds * len(c.depths)} training runs of {c.epochs} epochs",
        paper_reference={
            "figure": "appendix Sec. 1.3 (not in our copy of the paper; the authors' code "
            "has only a stub: 3 outputs, MSE)",
            "claims": ["the hypernetwork outperforms the embedding method at similar size"],
            "design": "ours: MNIST digit of class c painted in colour palette[c] (so the colour "
            "must be inferred from I); g = 3-16-16-3, E = N_g",
        },
    )
)
