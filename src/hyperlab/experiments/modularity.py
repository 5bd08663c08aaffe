"""Experiments of "On the Modularity of Hypernetworks" (Galanti & Wolf, NeurIPS 2020).

Hypernetwork h(x, I) = g(x; f(I)) against the embedding method q(x, e(I)) at matched primary
sizes (Sec. 5). Sizes follow the paper; what it leaves out (epochs, test size, number of
repetitions in our presets) is stated in each config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyperlab.data import synthetic_task
from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.hypernet import EmbeddingModel, HyperModel, modularity_counts
from hyperlab.plots import errorbar_curves, save_figure
from hyperlab.primary import MLP, count_parameters
from hyperlab.train import TrainConfig, TrainingDiverged, fit

PAPER = "On the Modularity of Hypernetworks (Galanti & Wolf, NeurIPS 2020)"


def _mse_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    return nn.functional.mse_loss(model(batch["x"], batch["cond"]).squeeze(-1), batch["y"])


@torch.no_grad()
def regression_mse(
    model: nn.Module, split: Mapping[str, Tensor], device: torch.device, batch: int = 4096
) -> float:
    """Mean squared error of ``model(x, cond)`` against ``y`` over a split, in batches."""
    was_training = model.training
    model.eval()
    total, n = 0.0, split["y"].shape[0]
    for i in range(0, n, batch):
        x, c, y = (split[k][i : i + batch].to(device) for k in ("x", "cond", "y"))
        total += float((model(x, c).squeeze(-1) - y).pow(2).sum())
    model.train(was_training)
    return total / n


def synthetic_models(cfg: Mapping, depth: int, generator: torch.Generator):
    """The two models of Fig. 1a at f/e depth ``depth`` (linear layers), no biases (Sec. 5)."""
    d_x, d_i, width = cfg["d_x"], cfg["d_i"], cfg["width"]
    hidden = [width] * (depth - 1)
    g = MLP([d_x, cfg["g_hidden"], 1], bias=False)
    hyper = HyperModel(g, d_i, hidden, bias=False, generator=generator)
    emb = EmbeddingModel(
        d_x,
        d_i,
        cfg["embedding_dim"],
        hidden,
        [cfg["g_hidden"]],
        1,
        bias=False,
        generator=generator,
    )
    return {"hypernetwork": hyper, "embedding": emb}


def _train_one(ctx: RunContext, model: nn.Module, data: Mapping, key: tuple, cfg: Mapping) -> float:
    train_cfg = TrainConfig(
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        optimizer="sgd",
        seed=ctx.seed * 1000 + key[-1],
        progress=False,
        desc="-".join(map(str, key)),
    )
    try:
        fit(
            model,
            _mse_loss,
            data["train"],
            train_cfg,
            checkpoint_dir=ctx.checkpoint_dir(*key),
            device=ctx.device,
        )
    except TrainingDiverged:
        return math.nan
    return regression_mse(model, data["test"], ctx.device)


def run_synthetic_depth(ctx: RunContext) -> Result:
    """Fig. 1a: test MSE of both models as the depth k of f and e grows."""
    cfg = ctx.config
    depths, seeds = list(cfg["depths"]), int(cfg["seeds"])
    per_seed: dict[str, list[list[float]]] = {"hypernetwork": [], "embedding": []}
    counts = []
    runs = [(k, s) for k in depths for s in range(seeds)]
    bar = tqdm(total=len(runs) * 2, desc=ctx.name, disable=not ctx.progress)
    for k in depths:
        row = {"hypernetwork": [], "embedding": []}
        for s in range(seeds):
            run_seed = ctx.seed * 1000 + s
            data = synthetic_task(
                cfg["n_train"], cfg["n_test"], cfg["d_x"], cfg["d_i"], seed=run_seed
            )
            models = synthetic_models(cfg, k, ctx.generator("init", k, s))
            if s == 0:
                counts.append(
                    {
                        "k": k,
                        "N_f": count_parameters(models["hypernetwork"].f),
                        "N_g": models["hypernetwork"].g.layout.numel,
                        "N_e": count_parameters(models["embedding"].e),
                        "N_q": count_parameters(models["embedding"].q),
                    }
                )
            for name, model in models.items():
                mse = _train_one(ctx, model.to(ctx.device), data, (name, k, s), cfg)
                row[name].append(mse)
                bar.set_postfix(k=k, seed=s, model=name[:5], mse=f"{mse:.3g}")
                bar.update()
        for name in per_seed:
            per_seed[name].append(row[name])
    bar.close()

    def mean(v):
        return [float(np.nanmean(r)) for r in v]

    def std(v):
        return [float(np.nanstd(r)) for r in v]

    h, e = mean(per_seed["hypernetwork"]), mean(per_seed["embedding"])
    metrics = {
        "depths": depths,
        "hypernetwork_mse": h,
        "embedding_mse": e,
        "hypernetwork_mse_std": std(per_seed["hypernetwork"]),
        "embedding_mse_std": std(per_seed["embedding"]),
        "hypernetwork_mse_per_seed": per_seed["hypernetwork"],
        "embedding_mse_per_seed": per_seed["embedding"],
        "target_variance": float(
            synthetic_task(1, 4096, cfg["d_x"], cfg["d_i"])["test"]["y"].var()
        ),
        "parameter_counts": counts,
        "paper_formula_counts": [
            modularity_counts(
                cfg["d_x"], cfg["d_i"], cfg["embedding_dim"], k, cfg["width"], cfg["g_hidden"]
            )
            | {"k": k}
            for k in depths
        ],
    }
    deep = [i for i, k in enumerate(depths) if k >= 3]
    claims = {
        "hypernetwork beats embedding at every k >= 3": all(h[i] < e[i] for i in deep),
        "hypernetwork MSE improves with depth of f (deepest < shallowest)": h[-1] < h[0],
        "embedding MSE does not improve with depth of e (deepest >= 0.9 x shallowest)": (
            e[-1] >= 0.9 * e[0]
        ),
    }
    fig = errorbar_curves(
        depths,
        {"hypernetwork": per_seed["hypernetwork"], "embedding": per_seed["embedding"]},
        xlabel="number of layers k of f / e",
        ylabel="test MSE",
        title=f"Fig. 1a: y(x, I) = <x, h(I)>, d_x = {cfg['d_x']} ({ctx.preset})",
        logy=True,
    )
    fig_path = save_figure(fig, ctx.figure_path("fig1a_depth"))
    comparison = [
        (
            f"k={k}: MSE hyper / emb",
            "qualitative (no numbers)",
            f"{h[i]:.4g} ± {metrics['hypernetwork_mse_std'][i]:.2g} / "
            f"{e[i]:.4g} ± {metrics['embedding_mse_std'][i]:.2g}",
        )
        for i, k in enumerate(depths)
    ]
    comparison += [
        ("hyper < emb for k >= 3", "yes", "yes" if claims[next(iter(claims))] else "no"),
    ]
    return Result(metrics=metrics, claims=claims, figures=[fig_path.name], comparison=comparison)


_SYNTH_FULL = {
    "d_x": 1000,
    "d_i": 1000,
    "embedding_dim": 10_000,
    "width": 100,
    "g_hidden": 10,
    "depths": list(range(2, 10)),
    "n_train": 30_000,
    "n_test": 5_000,
    "batch_size": 200,
    "lr": 0.01,
    "epochs": 20,
    "seeds": 5,
}

register(
    Experiment(
        name="modularity-synthetic-depth",
        paper=PAPER,
        reproduces="Fig. 1a",
        summary="Test MSE of hypernetwork vs embedding method on y(x, I) = <x, h(I)> as the "
        "depth k of f and e grows (g, q: d_in-10-1 ReLU; f, e: width 100).",
        configs={
            "full": _SYNTH_FULL,
            "quick": _SYNTH_FULL
            | {
                "d_x": 100,
                "d_i": 100,
                "embedding_dim": 1000,
                "width": 100,
                "depths": [2, 3, 5, 7],
                "n_train": 10_000,
                "n_test": 2_000,
                "epochs": 10,
                "seeds": 2,
            },
            "tiny": _SYNTH_FULL
            | {
                "d_x": 8,
                "d_i": 8,
                "embedding_dim": 16,
                "width": 16,
                "depths": [2, 3],
                "n_train": 400,
                "n_test": 200,
                "batch_size": 50,
                "epochs": 2,
                "seeds": 2,
            },
        },
        run=run_synthetic_depth,
        paper_reference={
            "figure": "Fig. 1a (no numbers in the text; error bars: SD over 100 repetitions)",
            "claims": [
                "when f and e have 3 or more layers, the hypernetwork outperforms the embedding",
                "the hypernetwork's error improves as the number of layers of f grows",
                "the embedding method's error does not improve with the number of layers of e",
            ],
            "epochs": "not stated in the paper (ours: config 'epochs')",
        },
    )
)
