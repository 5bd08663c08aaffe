"""The synthetic task of Fig. 1: y(x, I) = <x, h(I)> with h a random sigmoid network.

Shared by `.synthetic_depth` (Fig. 1a) and `.synthetic_embedding_dim` (Fig. 1b): the
config fields, one seed's data
([`synthetic_task`][hyperlab.experiments.modularity.synthetic.synthetic_task]), the test MSE, and
the claims, figure and
rows both figures report
([`synthetic_result`][hyperlab.experiments.modularity.synthetic.synthetic_result]).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hyperlab.data import make_synthetic_target
from hyperlab.data import synthetic_task as make_synthetic_task
from hyperlab.data.tasks import TARGET_KINDS, best_independent_mse
from hyperlab.experiments.base import Result, RunContext
from hyperlab.experiments.claims import Claim
from hyperlab.experiments.config import param
from hyperlab.experiments.evaluate import evaluate_batches
from hyperlab.experiments.figures import curve_figure, epoch_figure
from hyperlab.experiments.modularity.summary import (
    comparison_claims,
    conditioning_rows,
    curve_panels,
    pair_rows,
)
from hyperlab.experiments.modularity.sweep import Conventions, Task, TunedSweepConfig, tune_notes
from hyperlab.experiments.stats import nanmean

#: Training samples scored after every epoch for the training curves (and the train MSE).
TRAIN_EVAL = 5_000


#: the paper's target as a panel of `paper_sizes`: a 'centred' run is outside the paper (beyond)
PAPER_TARGET: dict[str, tuple[str, ...]] = {"target": ("sigmoid",)}


@dataclass(frozen=True)
class SyntheticConfig(TunedSweepConfig, Conventions):
    """Sizes of the synthetic task and of f, e, g, q (Sec. 5: d_x = d_I = 1000)."""

    target: str = param("sigmoid", "h of y = <x, h(I)>: 'sigmoid' = plain d_I-100-100-d_x "
                        "sigmoid net, nn.Linear default init, unscaled (the paper's words); "
                        "'centred' = centred sigmoids rescaled to Var y = 1",
                        choices=TARGET_KINDS)  # fmt: skip
    d_x: int = param(1000, "dimension of x (g's input)", min=1)
    d_i: int = param(1000, "dimension of I (f's and e's input)", min=1)
    width: int = param(100, "hidden width of f and e", min=1)
    g_hidden: int = param(10, "hidden width of g and q (g: d_x-g_hidden-1)", min=1)
    n_train: int = param(30_000, "training samples (each with its own I)", min=1)
    n_test: int = param(5_000, "test samples (fresh x and fresh I)", min=1)
    n_conditions: int | None = param(
        None, "None: every sample its own I (the paper); N: N shared training conditions", min=1
    )
    batch_size: int = param(200, "minibatch size", min=1)
    epochs: int = param(20, "training epochs per model (not stated in the paper)", min=1)


def _mse_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    return nn.functional.mse_loss(model(batch["x"], batch["cond"]).squeeze(-1), batch["y"])


def regression_mse(model: nn.Module, split: Mapping[str, Tensor], device: torch.device) -> float:
    """Mean squared error of ``model(x, cond)`` against ``y`` over a split."""
    sums = evaluate_batches(
        model, split, lambda pred, b: {"sq": (pred.squeeze(-1) - b["y"]).pow(2).sum()},
        device=device, batch=4096,
    )  # fmt: skip
    return sums["sq"] / split["y"].shape[0]


def synthetic_task(ctx: RunContext[SyntheticConfig], s: int) -> Task:
    """Seed ``s``'s data. Headline split (suffix ''): conditions I never seen in training
    (fresh x too). ``_seen_conditions``: fresh x with conditions from the training set."""
    cfg = ctx.config
    run_seed = ctx.seed_for("synthetic-task", s)  # the task's target and samples
    d_x, d_i, n_test, kind = cfg.d_x, cfg.d_i, cfg.n_test, cfg.target
    if cfg.n_conditions:
        data = make_synthetic_task(cfg.n_train, n_test, d_x, d_i, n_conditions=cfg.n_conditions,
                                   seed=run_seed, kind=kind)  # fmt: skip
        splits = {"test": data["test_unseen"], "test_seen": data["test"]}
    else:  # the paper's setting: every sample has its own I
        data = make_synthetic_task(cfg.n_train, n_test, d_x, d_i, seed=run_seed, kind=kind)
        target = make_synthetic_target(
            d_i, d_x, generator=torch.Generator().manual_seed(run_seed), kind=kind
        )
        gen = ctx.generator("seen-conditions", s)
        idx = torch.randint(0, cfg.n_train, (n_test,), generator=gen)
        cond = data["train"]["cond"][idx]
        x = torch.randn(n_test, d_x, generator=gen)
        with torch.no_grad():
            seen = {"x": x, "cond": cond, "y": target(x, cond).float()}
        splits = {"test": data["test"], "test_seen": seen}
    train = {k: data["train"][k] for k in ("x", "cond", "y")}
    train_eval = {k: v[:TRAIN_EVAL] for k, v in train.items()}
    return Task(
        data={"train": train, "train_eval": train_eval, **splits},
        loss=_mse_loss,
        evaluate=lambda m, split: {"mse": regression_mse(m, split, ctx.device)},
        splits={"": "test", "_seen_conditions": "test_seen", "_train": "train_eval"},
        primary="mse",
        track={"train": "train_eval", "test": "test"},
        info={"var_y": float(splits["test"]["y"].var()),
              "best_independent_mse": best_independent_mse(train, splits["test"])},
    )  # fmt: skip


def trained(metrics: Mapping[str, Any], model: str) -> list[bool]:
    """Per swept value: ``model``'s mean training MSE is below the best I-independent
    predictor's (least squares of y on x): it learned something of y's dependence on I."""
    floor = nanmean(metrics["task_info"]["best_independent_mse"])
    return [bool(math.isfinite(v) and v < floor) for v in metrics[f"{model}_mse_train"]]


TRAINED_RULE = "mean training MSE below the best I-independent predictor's"


def synthetic_claims(values: list, metrics: Mapping[str, Any], *, what: str, paper_ref: str,
                     claim_kw: Mapping[str, Any]) -> list[Claim]:  # fmt: skip
    """Fig. 1a/1b's sentences on the approximation error (training MSE, the paper's quantity)
    and on held-out conditions (test MSE on unseen I)."""
    ok = trained(metrics, "embedding")
    claims = comparison_claims(
        values, metrics, "mse_train", what=what, score="training MSE (approximation error)",
        paper_ref=paper_ref, trained=ok, trained_rule=TRAINED_RULE, **claim_kw,
    )  # fmt: skip
    claims += comparison_claims(
        values, metrics, "mse", what=what, score="test MSE (unseen I)", paper_ref=paper_ref,
        trained=ok, trained_rule=TRAINED_RULE, **claim_kw,
    )  # fmt: skip
    return claims


def synthetic_result(
    ctx: RunContext[SyntheticConfig],
    key: str,
    values: list,
    metrics: dict,
    table: Mapping,
    *,
    stem: str,
    xlabel: str,
    title: str,
    claims: list[Claim],
) -> Result:
    """The figure (train and test MSE beside Var y and the best I-independent predictor), the
    training curves and the rows of Fig. 1a/1b, with their ``claims``."""
    info = metrics["task_info"]
    var_y, floor = nanmean(info["var_y"]), nanmean(info["best_independent_mse"])
    levels = {"Var y": var_y, "best I-independent (lstsq of y on x)": floor}
    fig = curve_figure(
        ctx, stem, values,
        {
            "hypernetwork": table["hypernetwork_mse"],
            "embedding": table["embedding_mse"],
            "hypernetwork (seen I)": table["hypernetwork_mse_seen_conditions"],
            "embedding (seen I)": table["embedding_mse_seen_conditions"],
            "hypernetwork (train)": table["hypernetwork_mse_train"],
            "embedding (train)": table["embedding_mse_train"],
        },
        xlabel=xlabel, ylabel=f"MSE (Var y = {var_y:.3g})", title=title, logy=True,
        hlines={"best I-independent (lstsq of y on x)": floor},
    )  # fmt: skip
    panels = curve_panels(key, values, metrics, {"mse_test": " test", "mse_train": " train"})
    curves = epoch_figure(ctx, f"{stem}_curves", panels, ylabel="MSE (train: dashed)",
                          title=f"{title}: training curves", logy=True)  # fmt: skip
    comparison = [(name, "not stated", f"{value:.4g}") for name, value in levels.items()]
    comparison += pair_rows(key, values, metrics, "mse_train")
    comparison += pair_rows(key, values, metrics, "mse")
    comparison += pair_rows(key, values, metrics, "mse_seen_conditions")
    comparison += conditioning_rows(key, values, metrics)
    return Result(metrics=metrics, claims=claims, figures=[fig, curves], comparison=comparison,
                  notes=tune_notes(metrics))  # fmt: skip
