"""Appendix 1.4: rotation error of both models at several learning rates, f and e of fixed
depth (the authors' grid 1e-4 * 10^(j/4), j = 2..9)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.experiments.claims import Claim, compare
from hyperlab.experiments.config import param
from hyperlab.experiments.figures import curve_figure
from hyperlab.experiments.modularity.images import ImageData, rotation_builders, rotation_task
from hyperlab.experiments.modularity.rotation import TINY
from hyperlab.experiments.modularity.summary import comparison_claims, pair_rows, per_seed
from hyperlab.experiments.modularity.sweep import SweepConfig, sweep
from hyperlab.experiments.papers import MODULARITY
from hyperlab.experiments.scale import UNSTATED, sizes_of

PAPER_REF = "App. 1.4"


@dataclass(frozen=True)
class LrSensitivityConfig(ImageData, SweepConfig):
    """App. 1.4: the learning-rate grid and the fixed depth of f and e."""

    depth: int = param(4, "number of layers of f and e", min=2)
    lrs: list[float] = param([1e-4 * 10 ** (j / 4) for j in range(2, 10)],
                             "learning rates (authors' grid 1e-4 * 10^(j/4))",
                             positive=True)  # fmt: skip


def _at_depth(build: Callable[[Any, torch.Generator], nn.Module], k: int, lr: float,
              gen: torch.Generator) -> nn.Module:  # fmt: skip
    """The model of depth ``k`` (every swept learning rate trains the same architecture)."""
    return build(k, gen)


def run(ctx: RunContext[LrSensitivityConfig]) -> Result:
    """Compute the sweep over learning rates, then summarise and draw the appendix figure."""
    cfg = ctx.config
    lrs = list(cfg.lrs)
    k = cfg.depth
    builders = rotation_builders(cfg)
    metrics, table = sweep(
        ctx,
        values=lrs,
        make_task=lambda s: rotation_task(ctx, s),
        builders={name: functools.partial(_at_depth, b, k) for name, b in builders.items()},
        lr=lambda name, v: v,
        conventions=cfg,
        tuning=None,
    )
    metrics = {"lrs": lrs, "depth": k, "dataset": cfg.dataset, **metrics}
    claims = judge(cfg, metrics)
    fig = curve_figure(
        ctx, f"figA_lr_{cfg.dataset}", lrs,
        {"hypernetwork": table["hypernetwork_error"], "embedding": table["embedding_error"]},
        xlabel="learning rate", ylabel="test classification error", logx=True,
        title=f"Appendix: lr sensitivity, rotation, {cfg.dataset}, k={k} ({ctx.preset})",
    )  # fmt: skip
    return Result(metrics=metrics, claims=claims, figures=[fig],
                  comparison=pair_rows("lr", lrs, metrics, "error"))  # fmt: skip


def judge(cfg: LrSensitivityConfig, metrics: dict) -> list[Claim]:
    """App. 1.4: the comparison holds at every learning rate, and between each model's best."""
    lrs = metrics["lrs"]
    claims = comparison_claims(lrs, metrics, "error", what="learning rate", score="test error",
                               paper_ref=PAPER_REF, h_improves=False, e_flat=False)  # fmt: skip
    h, e = per_seed(metrics, "hypernetwork", "error"), per_seed(metrics, "embedding", "error")
    means_h = [float(np.nanmean(r)) if np.isfinite(r).any() else math.inf for r in map(np.array, h)]
    means_e = [float(np.nanmean(r)) if np.isfinite(r).any() else math.inf for r in map(np.array, e)]
    bh, be = int(np.argmin(means_h)), int(np.argmin(means_e))
    best = compare(h[bh], e[be], names=("hypernetwork", "embedding"))
    claims.append(Claim.of(
        "the hypernetwork's best test error over the learning rates < the embedding's best",
        PAPER_REF, best, best_lr_hypernetwork=lrs[bh], best_lr_embedding=lrs[be],
    ))  # fmt: skip
    return claims


register(
    Experiment(
        name="modularity-lr-sensitivity",
        paper=MODULARITY,
        reproduces="App. 1.4",
        summary="Rotation prediction at several learning rates (authors' grid 1e-4·10^(j/4), "
        "j = 2..9) for both models, f and e of 4 layers.",
        config_class=LrSensitivityConfig,
        paper_sizes=sizes_of(LrSensitivityConfig, "lrs", "depth", "epochs", "n_train", "n_test")
        | {"dataset": ("mnist", "cifar10"), "seeds": UNSTATED},  # the authors' lr grid
        presets={
            "full": {},
            "quick": {
                "n_train": 20_000,
                "n_test": 2_000,
                "epochs": 3,
                "seeds": 2,
                "lrs": [0.001, 0.003, 0.01, 0.03],
            },
            "tiny": {k: v for k, v in TINY.items() if not k.startswith("tune")}
            | {"lrs": [0.01, 0.1], "depth": 2},
        },  # fmt: skip
        run=run,
        judge=judge,
        selects=("seeds", "lrs"),
        estimate=lambda c: f"{2 * c.seeds * len(c.lrs)} training runs of {c.epochs} epochs",
        paper_reference={
            "figure": "appendix Sec. 1.4 (not in our copy of the paper)",
            "claims": ["the results are consistent when varying the learning rate"],
        },
    )
)
