"""Experiments of "On the Modularity of Hypernetworks" (Galanti & Wolf, NeurIPS 2020).

Hypernetwork h(x, I) = g(x; f(I)) against the embedding method q(x, e(I)) at matched primary
sizes (Sec. 5). Sizes follow the paper; what it leaves out (epochs, test size, number of
repetitions in our presets) is stated in each config.

Every comparison experiment goes through the same two helpers: :func:`_fit_eval` (train one
model with :func:`hyperlab.train.fit`, evaluate it on every split) and :func:`_sweep` (the
loop over seeds and over the swept value, with the optional per-model learning-rate search on
a validation split, ``--set tune=true``). Each run records mean, standard deviation and
per-seed values, and the paper's qualitative claims as booleans computed from those numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyperlab.data import (
    colorization_batch,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
    make_synthetic_target,
    rotation_batch,
    synthetic_task,
)
from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.hypernet import EmbeddingModel, HyperModel, modularity_counts
from hyperlab.plots import errorbar_curves, save_figure
from hyperlab.primary import MLP, count_parameters
from hyperlab.train import TrainConfig, TrainingDiverged, fit

PAPER = "On the Modularity of Hypernetworks (Galanti & Wolf, NeurIPS 2020)"
MODELS = ("hypernetwork", "embedding")

# Keys shared by every comparison experiment: the reviewers' fairness request (Review 2).
_TUNE = {
    "tune": False,  # per-model learning-rate search on a validation split before the final runs
    "tune_lrs": [0.001, 0.003, 0.01, 0.03, 0.1],
    "tune_epochs": None,  # None: same as "epochs"
    "val_fraction": 0.1,  # of the training set, held out for the search (seed 0 data)
}


# ------------------------------------------------------------------------------------------
# Shared machinery: task, one training run, the seed/value sweep, summaries
# ------------------------------------------------------------------------------------------


@dataclass
class Task:
    """One seed's data and how to train on and score it.

    ``data["train"]`` is what :func:`fit` iterates over (``transform`` turns a raw batch into
    model inputs, drawing fresh randomness such as rotation angles). ``freeze(raw, tag)`` turns
    a raw split into fixed evaluation data (fixed angles/pixels); ``evaluate(model, frozen)``
    returns named scores. ``splits`` maps a metric suffix to a key of ``data`` holding frozen
    evaluation data; the suffix ``""`` is the headline split.
    """

    data: dict[str, dict[str, Tensor]]
    loss: Callable[[nn.Module, Mapping[str, Tensor]], Tensor]
    evaluate: Callable[[nn.Module, Mapping[str, Tensor]], dict[str, float]]
    splits: dict[str, str]
    primary: str
    transform: Callable | None = None
    freeze: Callable[[dict[str, Tensor], str], dict[str, Tensor]] = field(
        default=lambda raw, tag: raw
    )


def _fit_eval(
    ctx: RunContext,
    model: nn.Module,
    task: Task,
    *,
    lr: float,
    epochs: int,
    key: Sequence[object],
    train: Mapping[str, Tensor] | None = None,
    splits: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Train ``model`` (SGD, checkpointed, resumable) and score it on ``splits``.

    Returns ``{suffix + score_name: value}``; a diverged run scores NaN everywhere.
    """
    cfg = ctx.config
    splits = task.splits if splits is None else splits
    train_cfg = TrainConfig(
        epochs=int(epochs),
        batch_size=int(cfg["batch_size"]),
        lr=float(lr),
        optimizer="sgd",
        momentum=float(cfg.get("momentum", 0.0)),
        seed=ctx.seed_for(*key),
        progress=False,
        desc="-".join(map(str, key)),
    )
    model = model.to(ctx.device)
    try:
        fit(
            model,
            task.loss,
            task.data["train"] if train is None else train,
            train_cfg,
            transform=task.transform,
            checkpoint_dir=ctx.checkpoint_dir(*key, f"lr{lr:g}"),
            device=ctx.device,
        )
    except TrainingDiverged:
        probe = task.evaluate(model, _head(task.data[next(iter(splits.values()))]))
        return {f"{name}{suffix}": math.nan for suffix in splits for name in probe}
    out: dict[str, float] = {}
    for suffix, split in splits.items():
        for name, value in task.evaluate(model, task.data[split]).items():
            out[f"{name}{suffix}"] = value
    return out


def _head(split: Mapping[str, Tensor], n: int = 2) -> dict[str, Tensor]:
    return {k: v[:n] for k, v in split.items()}


def _tune_lr(
    ctx: RunContext,
    build: Callable[[torch.Generator], nn.Module],
    task: Task,
    key: Sequence[object],
) -> dict[str, Any]:
    """Learning-rate search: train on the first (1 - val_fraction) of the training set for
    each candidate, score ``task.primary`` on the held-out rest, return the best (lowest)."""
    cfg = ctx.config
    train = task.data["train"]
    n = next(iter(train.values())).shape[0]
    n_val = max(1, int(round(n * float(cfg["val_fraction"]))))
    if n_val >= n:
        raise ValueError(f"val_fraction={cfg['val_fraction']} leaves no training data")
    part = {k: v[: n - n_val] for k, v in train.items()}
    val = task.freeze({k: v[n - n_val :] for k, v in train.items()}, "val")
    val_task = Task(
        data={"train": part, "val": val},
        loss=task.loss,
        evaluate=task.evaluate,
        splits={"": "val"},
        primary=task.primary,
        transform=task.transform,
    )
    epochs = cfg["tune_epochs"] or cfg["epochs"]
    scores = []
    for lr in cfg["tune_lrs"]:
        model = build(ctx.generator("tune-init", *key))
        res = _fit_eval(ctx, model, val_task, lr=float(lr), epochs=epochs, key=("tune", *key))
        scores.append(res[task.primary])
    finite = [(s, lr) for s, lr in zip(scores, cfg["tune_lrs"], strict=True) if math.isfinite(s)]
    best = min(finite)[1] if finite else cfg["lr"]
    return {"lrs": list(cfg["tune_lrs"]), "val_scores": scores, "best_lr": float(best)}


def _nanmean(v: Sequence[float]) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else math.nan


def _nanstd(v: Sequence[float]) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.nanstd(a)) if np.isfinite(a).any() else math.nan


def _sweep(
    ctx: RunContext,
    *,
    values: Sequence[Any],
    make_task: Callable[[int], Task],
    builders: Mapping[str, Callable[[Any, torch.Generator], nn.Module]],
    lr: Callable[[str, Any], float] | None = None,
    tune: bool | None = None,
    on_model: Callable[[str, Any, nn.Module], None] | None = None,
) -> tuple[dict[str, Any], dict[str, list[list[float]]]]:
    """Train every model at every swept value for ``config['seeds']`` seeds.

    Seeds are the outer loop (one task, i.e. one dataset draw, per seed). With tuning on, each
    model gets its own learning rate per swept value, chosen on seed 0's validation split.
    Returns ``(metrics, per_seed)``: ``metrics[f"{model}_{score}"]`` is the mean over seeds per
    value, with ``_std`` and ``_per_seed`` ([value][seed]) alongside; ``per_seed`` is the same
    per-seed table keyed like ``metrics``.
    """
    cfg = ctx.config
    seeds = int(cfg["seeds"])
    tune = bool(cfg.get("tune", False)) if tune is None else tune
    lr = lr or (lambda name, v: float(cfg["lr"]))
    table: dict[str, list[list[float]]] = {}
    chosen: dict[str, list[float]] = {name: [lr(name, v) for v in values] for name in builders}
    tuning: dict[str, list[dict[str, Any]]] = {name: [] for name in builders}
    bar = tqdm(total=seeds * len(values) * len(builders), desc=ctx.name, disable=not ctx.progress)
    for s in range(seeds):
        task = make_task(s)
        for i, v in enumerate(values):
            for name, build in builders.items():
                if tune and s == 0:
                    info = _tune_lr(ctx, lambda g, b=build, v=v: b(v, g), task, (name, v))
                    tuning[name].append({"value": v, **info})
                    chosen[name][i] = info["best_lr"]
                model = build(v, ctx.generator("init", name, v, s))
                if on_model is not None and s == 0:
                    on_model(name, v, model)
                scores = _fit_eval(
                    ctx, model, task, lr=chosen[name][i], epochs=cfg["epochs"], key=(name, v, s)
                )
                for score, value in scores.items():
                    rows = table.setdefault(f"{name}_{score}", [[] for _ in values])
                    rows[i].append(value)
                shown = scores.get(task.primary, math.nan)
                bar.set_postfix(seed=s, value=v, model=name[:5], score=f"{shown:.3g}")
                bar.update()
        del task
    bar.close()
    metrics: dict[str, Any] = {}
    for key, rows in table.items():
        metrics[key] = [_nanmean(r) for r in rows]
        metrics[f"{key}_std"] = [_nanstd(r) for r in rows]
        metrics[f"{key}_per_seed"] = rows
    metrics["learning_rates"] = chosen
    if tune:
        metrics["tuning"] = tuning
    return metrics, table


def _fmt(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "diverged"
    return f"{mean:.4g} ± {std:.2g}"


def _pair_rows(label: str, values: Sequence[Any], metrics: Mapping, score: str) -> list:
    """Comparison rows 'label=v: score hyper / emb' (the paper gives no numbers)."""
    h, e = metrics[f"hypernetwork_{score}"], metrics[f"embedding_{score}"]
    hs, es = metrics[f"hypernetwork_{score}_std"], metrics[f"embedding_{score}_std"]
    return [
        (
            f"{label}={v}: {score} hyper / emb",
            "qualitative (no numbers)",
            f"{_fmt(h[i], hs[i])} / {_fmt(e[i], es[i])}",
        )
        for i, v in enumerate(values)
    ]


def _lt(a: float, b: float) -> bool:
    return math.isfinite(a) and (not math.isfinite(b) or a < b)


def _comparison_claims(
    values: Sequence[Any],
    h: Sequence[float],
    e: Sequence[float],
    *,
    what: str,
    score: str,
    beat_from: Callable[[Any], bool] = lambda v: True,
    beat_label: str = "at every",
    h_improves: bool = True,
    e_flat: bool = True,
) -> tuple[dict[str, bool], dict[str, str]]:
    """The paper's recurring claims, computed from the means, with the numbers behind them."""
    claims, evidence = {}, {}
    idx = [i for i, v in enumerate(values) if beat_from(v)]
    c = f"hypernetwork {score} < embedding {score} {beat_label} {what}"
    claims[c] = bool(idx) and all(_lt(h[i], e[i]) for i in idx)
    evidence[c] = ", ".join(f"{values[i]}: {h[i]:.3g} vs {e[i]:.3g}" for i in idx)
    if h_improves:
        c = f"hypernetwork {score} improves as {what} grows (largest < smallest)"
        claims[c] = _lt(h[-1], h[0])
        evidence[c] = f"{values[0]}: {h[0]:.3g} -> {values[-1]}: {h[-1]:.3g}"
    if e_flat:
        c = f"embedding {score} does not improve as {what} grows (largest >= 0.9 x smallest)"
        claims[c] = bool(math.isfinite(e[-1]) and math.isfinite(e[0]) and e[-1] >= 0.9 * e[0])
        evidence[c] = f"{values[0]}: {e[0]:.3g} -> {values[-1]}: {e[-1]:.3g}"
    return claims, evidence


def _figure(
    ctx: RunContext,
    stem: str,
    x: Sequence[Any],
    curves: Mapping[str, list[list[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
    logx: bool = False,
) -> str:
    clean = {
        k: [[u for u in r if math.isfinite(u)] or [math.nan] for r in rows]
        for k, rows in curves.items()
    }
    fig = errorbar_curves(list(x), clean, xlabel=xlabel, ylabel=ylabel, title=title, logy=logy)
    if logx:
        fig.axes[0].set_xscale("log")
    elif all(isinstance(v, int) for v in x):
        fig.axes[0].set_xticks(list(x))
    return save_figure(fig, ctx.figure_path(stem)).name


# ------------------------------------------------------------------------------------------
# Synthetic target y(x, I) = <x, h(I)> (Fig. 1a, 1b)
# ------------------------------------------------------------------------------------------


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


def _synthetic_task(ctx: RunContext, s: int) -> Task:
    """Seed ``s``'s data. Headline split (suffix ''): conditions I never seen in training
    (fresh x too). ``_seen_conditions``: fresh x with conditions from the training set."""
    cfg = ctx.config
    run_seed = ctx.seed * 1000 + s
    d_x, d_i, n_test = cfg["d_x"], cfg["d_i"], cfg["n_test"]
    if cfg.get("n_conditions"):
        data = synthetic_task(
            cfg["n_train"], n_test, d_x, d_i, n_conditions=int(cfg["n_conditions"]), seed=run_seed
        )
        splits = {"test": data["test_unseen"], "test_seen": data["test"]}
    else:  # the paper's setting: every sample has its own I
        data = synthetic_task(cfg["n_train"], n_test, d_x, d_i, seed=run_seed)
        target = make_synthetic_target(d_i, d_x, generator=torch.Generator().manual_seed(run_seed))
        gen = torch.Generator().manual_seed(run_seed + 7919)
        idx = torch.randint(0, cfg["n_train"], (n_test,), generator=gen)
        cond = data["train"]["cond"][idx]
        x = torch.randn(n_test, d_x, generator=gen)
        with torch.no_grad():
            seen = {"x": x, "cond": cond, "y": target(x, cond).float()}
        splits = {"test": data["test"], "test_seen": seen}
    train = {k: data["train"][k] for k in ("x", "cond", "y")}
    return Task(
        data={"train": train, **splits},
        loss=_mse_loss,
        evaluate=lambda m, split: {"mse": regression_mse(m, split, ctx.device)},
        splits={"": "test", "_seen_conditions": "test_seen"},
        primary="mse",
    )


def synthetic_models(cfg: Mapping, depth: int, generator: torch.Generator):
    """The two models of Fig. 1a at f/e depth ``depth`` (linear layers), no biases (Sec. 5)."""
    return {name: _synthetic_depth_builders(cfg)[name](depth, generator) for name in MODELS}


def _synthetic_depth_builders(cfg: Mapping):
    d_x, d_i, width, gh = cfg["d_x"], cfg["d_i"], cfg["width"], cfg["g_hidden"]

    def hyper(k: int, gen: torch.Generator) -> nn.Module:
        g = MLP([d_x, gh, 1], bias=False)
        return HyperModel(g, d_i, [width] * (k - 1), bias=False, generator=gen)

    def emb(k: int, gen: torch.Generator) -> nn.Module:
        return EmbeddingModel(
            d_x, d_i, cfg["embedding_dim"], [width] * (k - 1), [gh], 1, bias=False, generator=gen
        )

    return {"hypernetwork": hyper, "embedding": emb}


def _counts_recorder(counts: list, key: str):
    def record(name: str, v: Any, model: nn.Module) -> None:
        if name == "hypernetwork":
            counts.append({key: v, "N_f": count_parameters(model.f), "N_g": model.g.layout.numel})
        else:
            row = next(c for c in counts if c[key] == v)
            row.update(N_e=count_parameters(model.e), N_q=count_parameters(model.q))

    return record


def run_synthetic_depth(ctx: RunContext) -> Result:
    """Fig. 1a: test MSE of both models as the depth k of f and e grows."""
    cfg = ctx.config
    depths = list(cfg["depths"])
    counts: list[dict] = []
    metrics, table = _sweep(
        ctx,
        values=depths,
        make_task=lambda s: _synthetic_task(ctx, s),
        builders=_synthetic_depth_builders(cfg),
        on_model=_counts_recorder(counts, "k"),
    )
    metrics = {"depths": depths, **metrics}
    metrics["target_variance"] = float(
        synthetic_task(1, 4096, cfg["d_x"], cfg["d_i"])["test"]["y"].var()
    )
    metrics["parameter_counts"] = counts
    metrics["paper_formula_counts"] = [
        modularity_counts(
            cfg["d_x"], cfg["d_i"], cfg["embedding_dim"], k, cfg["width"], cfg["g_hidden"]
        )
        | {"k": k}
        for k in depths
    ]
    return _synthetic_result(
        ctx, "k", depths, metrics, table, stem="fig1a_depth", what="depth k of f / e",
        claim_kw={"beat_from": lambda k: k >= 3, "beat_label": "at every k >= 3 and every"},
        xlabel="number of layers k of f / e",
        title=f"Fig. 1a: y(x, I) = <x, h(I)>, d_x = {cfg['d_x']} ({ctx.preset})",
    )  # fmt: skip


def _synthetic_result(
    ctx: RunContext,
    key: str,
    values: list,
    metrics: dict,
    table: Mapping,
    *,
    stem: str,
    what: str,
    claim_kw: Mapping[str, Any],
    xlabel: str,
    title: str,
) -> Result:
    """Claims (unseen and seen conditions), the four-curve figure and the rows of Fig. 1a/1b."""
    claims, evidence = _comparison_claims(
        values, metrics["hypernetwork_mse"], metrics["embedding_mse"],
        what=what, score="MSE (unseen I)", **claim_kw,
    )  # fmt: skip
    c2, ev2 = _comparison_claims(
        values, metrics["hypernetwork_mse_seen_conditions"],
        metrics["embedding_mse_seen_conditions"], what=what, score="MSE (seen I, fresh x)",
        **{**claim_kw, "h_improves": False, "e_flat": False},
    )  # fmt: skip
    claims |= c2
    metrics["claim_evidence"] = evidence | ev2
    fig = _figure(
        ctx, stem, values,
        {
            "hypernetwork": table["hypernetwork_mse"],
            "embedding": table["embedding_mse"],
            "hypernetwork (seen I)": table["hypernetwork_mse_seen_conditions"],
            "embedding (seen I)": table["embedding_mse_seen_conditions"],
        },
        xlabel=xlabel, ylabel="test MSE", title=title, logy=True,
    )  # fmt: skip
    comparison = _pair_rows(key, values, metrics, "mse")
    comparison += _pair_rows(key, values, metrics, "mse_seen_conditions")
    return Result(metrics=metrics, claims=claims, figures=[fig], comparison=comparison,
                  notes=_tune_notes(metrics))  # fmt: skip


def _tune_notes(metrics: Mapping) -> list[str]:
    if "tuning" not in metrics:
        return []
    chosen = metrics["learning_rates"]
    return [f"tuned learning rates ({name}): {chosen[name]}" for name in chosen]


def _fig1b_builders(cfg: Mapping):
    """Fig. 1b: f = d_I-100-100i-N_g, e = d_I-100-100-1000i (three layers each, no biases)."""
    d_x, d_i, gh = cfg["d_x"], cfg["d_i"], cfg["g_hidden"]
    w, fw, ew = cfg["width"], cfg["f_dim_step"], cfg["e_dim_step"]

    def hyper(i: int, gen: torch.Generator) -> nn.Module:
        g = MLP([d_x, gh, 1], bias=False)
        return HyperModel(g, d_i, [w, fw * i], bias=False, generator=gen)

    def emb(i: int, gen: torch.Generator) -> nn.Module:
        return EmbeddingModel(d_x, d_i, ew * i, [w, w], [gh], 1, bias=False, generator=gen)

    return {"hypernetwork": hyper, "embedding": emb}


def run_synthetic_embedding_dim(ctx: RunContext) -> Result:
    """Fig. 1b: test MSE as the embedding dimension (100i for f, 1000i for e) grows."""
    cfg = ctx.config
    steps = list(cfg["dims"])
    counts: list[dict] = []
    metrics, table = _sweep(
        ctx,
        values=steps,
        make_task=lambda s: _synthetic_task(ctx, s),
        builders=_fig1b_builders(cfg),
        on_model=_counts_recorder(counts, "i"),
    )
    metrics = {
        "dims": steps,
        "f_embedding_dims": [cfg["f_dim_step"] * i for i in steps],
        "e_embedding_dims": [cfg["e_dim_step"] * i for i in steps],
        **metrics,
        "parameter_counts": counts,
    }
    return _synthetic_result(
        ctx, "i", steps, metrics, table, stem="fig1b_embedding_dim",
        what="embedding dimension i", claim_kw={"h_improves": False},
        xlabel=f"i (embedding dim: {cfg['f_dim_step']}i for f, {cfg['e_dim_step']}i for e)",
        title=f"Fig. 1b: d_x = d_I = {cfg['d_x']} ({ctx.preset})",
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# Image data (rotation, colorization)
# ------------------------------------------------------------------------------------------

_LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}


def _images(ctx: RunContext, split: str, n: int | None) -> tuple[Tensor, Tensor]:
    """The first ``n`` images (uint8) and labels of ``config['dataset']``'s ``split``."""
    cfg = ctx.config
    name = cfg["dataset"]
    if name not in _LOADERS:
        raise ValueError(f"--dataset: expected one of {sorted(_LOADERS)}, got {name!r}")
    images, labels = _LOADERS[name](split, data_dir=ctx.data_dir, download=cfg["download"])
    if n is not None:
        images, labels = images[: int(n)], labels[: int(n)]
    return images, labels


def _width(cfg: Mapping) -> int:
    """Hidden width d of f and e: 50 for MNIST-like data, 100 for CIFAR-10 (Sec. 5)."""
    if cfg.get("width"):
        return int(cfg["width"])
    return 100 if cfg["dataset"] == "cifar10" else 50


def _nll_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    return nn.functional.cross_entropy(model(batch["x"], batch["cond"]), batch["y"])


@torch.no_grad()
def classification_scores(
    model: nn.Module, split: Mapping[str, Tensor], device: torch.device, batch: int = 1000
) -> dict[str, float]:
    """Test error (1 - accuracy) and mean NLL of ``model(x, cond)`` over a split."""
    was_training = model.training
    model.eval()
    wrong, nll, n = 0, 0.0, split["y"].shape[0]
    for i in range(0, n, batch):
        x, c, y = (split[k][i : i + batch].to(device) for k in ("x", "cond", "y"))
        logits = model(x, c)
        wrong += int((logits.argmax(-1) != y).sum())
        nll += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
    model.train(was_training)
    return {"error": wrong / n, "nll": nll / n}


def _rotation_task(ctx: RunContext, s: int) -> Task:
    """Rotation prediction: I = image (f's input), x = I rotated by a ~ U[0, 360) (g's
    input), 12 classes. Fresh angles every batch; fixed angles for validation and test."""
    cfg = ctx.config
    train, _ = _images(ctx, "train", cfg["n_train"])
    test, _ = _images(ctx, "test", cfg["n_test"])

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
    )


def _image_dims(ctx: RunContext) -> int:
    c, h, w = (3, 32, 32) if ctx.config["dataset"] == "cifar10" else (1, 28, 28)
    return c * h * w


def _rotation_builders(ctx: RunContext, *, embedding_dim: Callable[[Any], int] | None = None,
                       f_hidden: Callable[[Any], list[int]] | None = None,
                       e_hidden: Callable[[Any], list[int]] | None = None):  # fmt: skip
    """Fig. 3 models (notes A.2). g: d_x-10-12 without biases; f: d_I-d-...-N_g with k
    layers; e: same shape with output E = N_g; q: (d_x + E)-10-12 with biases."""
    cfg = ctx.config
    d = _image_dims(ctx)
    width = _width(cfg)
    gh, n_cls = int(cfg["g_hidden"]), 12
    n_g = d * gh + gh * n_cls
    f_hidden = f_hidden or (lambda k: [width] * (int(k) - 1))
    e_hidden = e_hidden or f_hidden
    embedding_dim = embedding_dim or (lambda k: n_g)

    def hyper(v: Any, gen: torch.Generator) -> nn.Module:
        g = MLP([d, gh, n_cls], bias=False)
        return HyperModel(g, d, f_hidden(v), bias=True, generator=gen)

    def emb(v: Any, gen: torch.Generator) -> nn.Module:
        return EmbeddingModel(d, d, embedding_dim(v), e_hidden(v), [gh], n_cls, bias=True,
                              generator=gen)  # fmt: skip

    return {"hypernetwork": hyper, "embedding": emb}


def _rotation_result(ctx, values, label, metrics, table, *, stem, xlabel, title, what,
                     h_improves, e_flat, logx=False) -> Result:  # fmt: skip
    h, e = metrics["hypernetwork_error"], metrics["embedding_error"]
    claims, evidence = _comparison_claims(
        values, h, e, what=what, score="test error", h_improves=h_improves, e_flat=e_flat
    )
    metrics["claim_evidence"] = evidence
    fig = _figure(
        ctx, stem, values,
        {"hypernetwork": table["hypernetwork_error"], "embedding": table["embedding_error"]},
        xlabel=xlabel, ylabel="test classification error", title=title, logx=logx,
    )  # fmt: skip
    comparison = _pair_rows(label, values, metrics, "error")
    return Result(metrics=metrics, claims=claims, figures=[fig], comparison=comparison,
                  notes=_tune_notes(metrics))  # fmt: skip


def run_rotation(ctx: RunContext) -> Result:
    """Fig. 3: rotation-prediction error of both models as the depth k of f and e grows."""
    cfg = ctx.config
    depths = list(cfg["depths"])
    counts: list[dict] = []
    metrics, table = _sweep(
        ctx,
        values=depths,
        make_task=lambda s: _rotation_task(ctx, s),
        builders=_rotation_builders(ctx),
        on_model=_counts_recorder(counts, "k"),
    )
    metrics = {"depths": depths, "dataset": cfg["dataset"], "width": _width(cfg), **metrics,
               "parameter_counts": counts}  # fmt: skip
    return _rotation_result(
        ctx, depths, "k", metrics, table, stem=f"fig3_rotation_{cfg['dataset']}",
        xlabel="number of layers k of f / e", what="depth k of f / e",
        title=f"Fig. 3: rotation prediction, {cfg['dataset']} ({ctx.preset})",
        h_improves=True, e_flat=True,
    )  # fmt: skip


def run_embedding_dim_images(ctx: RunContext) -> Result:
    """Appendix 1.2: rotation error as the embedding dimension grows (f, e of fixed depth).

    Our reading of the authors' code (notes A.2/A.6): e has 3 layers and output E_i =
    e_dim_step * (i + 1); the hypernetwork's counterpart is the width of f's last hidden
    layer, f_dim_step * (i + 1) (its output stays N_g).
    """
    cfg = ctx.config
    steps = list(cfg["dims"])
    width, k = _width(cfg), int(cfg["depth"])
    counts: list[dict] = []

    def f_hidden(i: int) -> list[int]:
        return [width] * (k - 2) + [int(cfg["f_dim_step"]) * (i + 1)]

    metrics, table = _sweep(
        ctx,
        values=steps,
        make_task=lambda s: _rotation_task(ctx, s),
        builders=_rotation_builders(
            ctx,
            embedding_dim=lambda i: int(cfg["e_dim_step"]) * (i + 1),
            f_hidden=f_hidden,
            e_hidden=lambda i: [width] * (k - 1),
        ),
        on_model=_counts_recorder(counts, "i"),
    )
    metrics = {
        "dims": steps,
        "f_embedding_dims": [int(cfg["f_dim_step"]) * (i + 1) for i in steps],
        "e_embedding_dims": [int(cfg["e_dim_step"]) * (i + 1) for i in steps],
        "dataset": cfg["dataset"],
        **metrics,
        "parameter_counts": counts,
    }
    return _rotation_result(
        ctx, steps, "i", metrics, table, stem=f"figA_embedding_dim_{cfg['dataset']}",
        xlabel=f"i (E = {cfg['e_dim_step']}(i+1) for e, last width {cfg['f_dim_step']}(i+1) "
        "for f)", what="embedding dimension", h_improves=False, e_flat=True,
        title=f"Appendix: embedding dimension, rotation, {cfg['dataset']} ({ctx.preset})",
    )  # fmt: skip


def run_lr_sensitivity(ctx: RunContext) -> Result:
    """Appendix 1.4: rotation error of both models for several learning rates, fixed depth."""
    cfg = ctx.config
    lrs = [float(v) for v in cfg["lrs"]]
    k = int(cfg["depth"])
    builders = _rotation_builders(ctx)
    metrics, table = _sweep(
        ctx,
        values=lrs,
        make_task=lambda s: _rotation_task(ctx, s),
        builders={name: (lambda v, g, b=b: b(k, g)) for name, b in builders.items()},
        lr=lambda name, v: v,
        tune=False,
    )
    metrics = {"lrs": lrs, "depth": k, "dataset": cfg["dataset"], **metrics}
    h, e = metrics["hypernetwork_error"], metrics["embedding_error"]
    best_h, best_e = np.nanmin(h), np.nanmin(e)
    claims, evidence = _comparison_claims(
        lrs, h, e, what="learning rate", score="test error", h_improves=False, e_flat=False
    )
    c = "best hypernetwork error over the learning rates < best embedding error"
    claims[c] = bool(_lt(float(best_h), float(best_e)))
    evidence[c] = f"{best_h:.3g} vs {best_e:.3g}"
    metrics["claim_evidence"] = evidence
    fig = _figure(
        ctx, f"figA_lr_{cfg['dataset']}", lrs,
        {"hypernetwork": table["hypernetwork_error"], "embedding": table["embedding_error"]},
        xlabel="learning rate", ylabel="test classification error", logx=True,
        title=f"Appendix: lr sensitivity, rotation, {cfg['dataset']}, k={k} ({ctx.preset})",
    )  # fmt: skip
    return Result(metrics=metrics, claims=claims, figures=[fig],
                  comparison=_pair_rows("lr", lrs, metrics, "error"))  # fmt: skip


# ------------------------------------------------------------------------------------------
# Colorization (appendix 1.3; our design, the authors' code is a stub)
# ------------------------------------------------------------------------------------------

# Digit class -> colour, so the colour of a grayscale digit is a function of the image I.
_PALETTE = torch.tensor(
    [
        [1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.4, 1.0], [1.0, 1.0, 0.2], [1.0, 0.2, 1.0],
        [0.2, 1.0, 1.0], [1.0, 0.6, 0.2], [0.6, 0.2, 1.0], [0.6, 1.0, 0.6], [1.0, 1.0, 1.0],
    ]
)  # fmt: skip


def _rgb_images(ctx: RunContext, split: str, n: int | None) -> Tensor:
    images, labels = _images(ctx, split, n)
    if images.ndim == 4:  # CIFAR-10: already RGB
        return images
    # MNIST-like: paint each digit by its class (uint8, to keep 60k images small).
    rgb = images.unsqueeze(1).float() * _PALETTE[labels].view(-1, 3, 1, 1)
    return rgb.round_().clamp_(0, 255).to(torch.uint8)


class _PixelLoss:
    def __call__(self, model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
        return nn.functional.mse_loss(model(batch["x"], batch["cond"]), batch["y"])


@torch.no_grad()
def _pixel_mse(model: nn.Module, split: Mapping[str, Tensor], device: torch.device,
               batch: int = 500) -> dict[str, float]:  # fmt: skip
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, split["y"].shape[0], batch):
        x, c, y = (split[k][i : i + batch].to(device) for k in ("x", "cond", "y"))
        total += float((model(x, c) - y).pow(2).sum())
        count += y.numel()
    model.train(was_training)
    return {"mse": total / count}


def _colorization_task(ctx: RunContext, s: int) -> Task:
    cfg = ctx.config
    train = _rgb_images(ctx, "train", cfg["n_train"])
    test = _rgb_images(ctx, "test", cfg["n_test"])
    p = int(cfg["pixels_per_image"])

    def transform(batch: dict[str, Tensor], gen: torch.Generator) -> dict[str, Tensor]:
        out = colorization_batch(batch["rgb"], gen, n_pixels=p, flatten=False)
        return {k: out[k].to(batch["rgb"].device) for k in ("x", "cond", "y")}

    def freeze(raw: dict[str, Tensor], tag: str) -> dict[str, Tensor]:
        out = colorization_batch(raw["rgb"], ctx.generator("pixels", tag, s), n_pixels=p,
                                 flatten=False)  # fmt: skip
        return {k: out[k] for k in ("x", "cond", "y")}

    return Task(
        data={"train": {"rgb": train}, "test": freeze({"rgb": test}, "test")},
        loss=_PixelLoss(),
        evaluate=lambda m, split: _pixel_mse(m, split, ctx.device),
        splits={"": "test"},
        primary="mse",
        transform=transform,
        freeze=freeze,
    )


def run_colorization(ctx: RunContext) -> Result:
    """Appendix 1.3: per-pixel colour MSE of both models as the depth of f and e grows."""
    cfg = ctx.config
    depths = list(cfg["depths"])
    c, h, w = (3, 32, 32) if cfg["dataset"] == "cifar10" else (1, 28, 28)
    d_i, width, gh = h * w, _width(cfg), int(cfg["g_hidden"])
    g_sizes = [3, gh, gh, 3]
    n_g = MLP(g_sizes).layout.numel

    def hyper(k: int, gen: torch.Generator) -> nn.Module:
        return HyperModel(MLP(g_sizes), d_i, [width] * (k - 1), generator=gen)

    def emb(k: int, gen: torch.Generator) -> nn.Module:
        return EmbeddingModel(3, d_i, n_g, [width] * (k - 1), [gh, gh], 3, generator=gen)

    counts: list[dict] = []
    metrics, table = _sweep(
        ctx,
        values=depths,
        make_task=lambda s: _colorization_task(ctx, s),
        builders={"hypernetwork": hyper, "embedding": emb},
        on_model=_counts_recorder(counts, "k"),
    )
    metrics = {"depths": depths, "dataset": cfg["dataset"], **metrics, "parameter_counts": counts}
    hm, em = metrics["hypernetwork_mse"], metrics["embedding_mse"]
    claims, evidence = _comparison_claims(
        depths, hm, em, what="depth k of f / e", score="pixel MSE", e_flat=False
    )
    metrics["claim_evidence"] = evidence
    fig = _figure(
        ctx, f"figA_colorization_{cfg['dataset']}", depths,
        {"hypernetwork": table["hypernetwork_mse"], "embedding": table["embedding_mse"]},
        xlabel="number of layers k of f / e", ylabel="test per-pixel RGB MSE", logy=True,
        title=f"Appendix: colorization, {cfg['dataset']} ({ctx.preset})",
    )  # fmt: skip
    return Result(metrics=metrics, claims=claims, figures=[fig],
                  comparison=_pair_rows("k", depths, metrics, "mse"),
                  notes=_tune_notes(metrics))  # fmt: skip


# ------------------------------------------------------------------------------------------
# Assumption 1: a unique best approximator (Fig. 2)
# ------------------------------------------------------------------------------------------


def _uniform_(t: Tensor, bound: float, gen: torch.Generator) -> Tensor:
    return t.copy_(torch.rand(t.shape, generator=gen) * (2 * bound) - bound)


class ConvTarget(nn.Module):
    """y(x) = fc1(ReLU(conv2(ReLU(conv1(x))))): conv 10x10 stride 2 (c -> 20 -> 50), fc 10.

    Random and never trained (Eq. 5). PyTorch's default init, drawn from ``generator``.
    """

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], generator):
        super().__init__()
        c, hh, ww = in_shape
        self.conv1 = nn.Conv2d(c, channels[0], 10, stride=2)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 10, stride=2)
        with torch.no_grad():
            probe = self.conv2(self.conv1(torch.zeros(1, c, hh, ww)))
        self.fc1 = nn.Linear(probe.numel(), 10)
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.fc1):
                fan_in = m.weight[0].numel()
                _uniform_(m.weight, 1 / math.sqrt(fan_in), generator)
                _uniform_(m.bias, 1 / math.sqrt(fan_in), generator)
        self.requires_grad_(False)
        self.in_shape = tuple(in_shape)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, *self.in_shape)
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc1(h.flatten(1))


class StudentPair(nn.Module):
    """Two shallow ReLU MLPs d-100-10 from different initialisations (rows unit-norm at init,
    as in the authors' code). Trained together on the sum of their losses, which gives each
    exactly its own gradient: equivalent to two independent runs on the same batches."""

    def __init__(self, d: int, hidden: int, generators: Sequence[torch.Generator]):
        super().__init__()
        self.nets = nn.ModuleList()
        for gen in generators:
            net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 10))
            with torch.no_grad():
                for lin in (net[0], net[2]):
                    bound = 1 / math.sqrt(lin.in_features)
                    _uniform_(lin.weight, bound, gen)
                    _uniform_(lin.bias, bound, gen)
                    lin.weight.div_(lin.weight.norm(dim=1, keepdim=True))
            self.nets.append(net)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return self.nets[0](x), self.nets[1](x)


def _assumption_inputs(ctx: RunContext, space: str, s: int):
    """Train data (dict for fit), its transform, fixed test inputs, input shape."""
    cfg = ctx.config
    if space == "uniform":
        shape = (1, 28, 28)
        n = int(cfg["uniform_per_epoch"])

        def transform(batch, gen):
            m = batch["index"].shape[0]
            x = torch.rand(m, *shape, generator=gen) * 2 - 1
            return {"x": x.to(batch["index"].device)}

        test = torch.rand(int(cfg["n_test"]), *shape, generator=ctx.generator("uniform", s))
        return {"index": torch.arange(n)}, transform, test * 2 - 1, shape
    if space not in _LOADERS:
        raise ValueError(f"inputs: expected 'uniform' or one of {sorted(_LOADERS)}, got {space!r}")
    loader = _LOADERS[space]
    train, _ = loader("train", data_dir=ctx.data_dir, download=cfg["download"])
    test, _ = loader("test", data_dir=ctx.data_dir, download=cfg["download"])
    mean, std = 0.1307, 0.3081  # the authors normalise every dataset with MNIST's constants

    def prep(images: Tensor, n: int | None) -> Tensor:
        x = images[:n] if n else images
        x = x.float().div(255.0)
        x = x.unsqueeze(1) if x.ndim == 3 else x
        return (x - mean) / std

    tr, te = prep(train, cfg["n_train"]), prep(test, cfg["n_test"])
    return {"x": tr}, None, te, tuple(tr.shape[1:])


def run_unique_approximator(ctx: RunContext) -> Result:
    """Fig. 2: MSE between two independently trained students and between a student and the
    target, per epoch, on each input space."""
    cfg = ctx.config
    spaces = list(cfg["inputs"])
    seeds, epochs = int(cfg["seeds"]), int(cfg["epochs"])
    metrics: dict[str, Any] = {"inputs": spaces, "epochs": list(range(1, epochs + 1))}
    claims, evidence, figures, comparison = {}, {}, [], []
    bar = tqdm(total=seeds * len(spaces), desc=ctx.name, disable=not ctx.progress)
    for space in spaces:
        curves = {"f1_f2": [], "f1_y": [], "f2_y": []}  # [seed][epoch]
        for s in range(seeds):
            train, transform, test_x, shape = _assumption_inputs(ctx, space, s)
            target = ConvTarget(shape, cfg["target_channels"], ctx.generator("target", space, s))
            target = target.to(ctx.device)
            test_x = test_x.to(ctx.device)
            with torch.no_grad():
                test_y = torch.cat([target(test_x[i : i + 1000]) for i in
                                    range(0, len(test_x), 1000)])  # fmt: skip

            def loss(model, batch, target=target):
                y = target(batch["x"])
                a, b = model(batch["x"])
                return nn.functional.mse_loss(a, y) + nn.functional.mse_loss(b, y)

            def evaluate(model, test_x=test_x, test_y=test_y):
                a, b = model(test_x)
                mse = nn.functional.mse_loss
                return {"f1_f2": mse(a, b), "f1_y": mse(a, test_y), "f2_y": mse(b, test_y)}

            gens = [ctx.generator("student", space, s, j) for j in (1, 2)]
            model = StudentPair(math.prod(shape), int(cfg["hidden"]), gens)
            train_cfg = TrainConfig(
                epochs=epochs, batch_size=int(cfg["batch_size"]), lr=float(cfg["lr"]),
                momentum=float(cfg["momentum"]), seed=ctx.seed_for(space, s), progress=False,
            )  # fmt: skip
            try:
                hist = fit(
                    model,
                    loss,
                    train,
                    train_cfg,
                    evaluate=evaluate,
                    transform=transform,
                    checkpoint_dir=ctx.checkpoint_dir(space, s),
                    device=ctx.device,
                )
                for key in curves:
                    curves[key].append([float(v) for v in hist.series(key)])
            except TrainingDiverged:
                for key in curves:
                    curves[key].append([math.nan] * epochs)
            bar.update()
        for key, rows in curves.items():
            by_epoch = [list(col) for col in zip(*rows, strict=True)]  # [epoch][seed]
            metrics[f"{space}_{key}_mse"] = [_nanmean(c) for c in by_epoch]
            metrics[f"{space}_{key}_mse_std"] = [_nanstd(c) for c in by_epoch]
            metrics[f"{space}_{key}_mse_per_seed"] = rows
        d12, d1y = metrics[f"{space}_f1_f2_mse"], metrics[f"{space}_f1_y_mse"]
        c = f"{space}: ||f1 - f2||^2 < 0.5 x ||f1 - y||^2 at the last epoch"
        claims[c] = _lt(d12[-1], 0.5 * d1y[-1])
        evidence[c] = f"{d12[-1]:.3g} vs {d1y[-1]:.3g} (ratio {d12[-1] / d1y[-1]:.2g})"
        c = f"{space}: ||f1 - f2||^2 < ||f1 - y||^2 at the last epoch"
        claims[c] = _lt(d12[-1], d1y[-1])
        ratios = [a / b for a, b in zip(d12, d1y, strict=True)]
        evidence[c] = f"ratio {ratios[0]:.2g} at epoch 1 -> {ratios[-1]:.2g} at epoch {epochs}"
        metrics[f"{space}_ratio_f1_f2_over_f1_y"] = ratios
        for key, label in (("f1_f2", "MSE(f1, f2)"), ("f1_y", "MSE(f1, y)")):
            comparison.append((
                f"{space}, last epoch: {label}", "qualitative (f1-f2 well below f1-y)",
                _fmt(metrics[f"{space}_{key}_mse"][-1], metrics[f"{space}_{key}_mse_std"][-1]),
            ))  # fmt: skip
        per_epoch = {
            "||f1 - f2|| (MSE)": [list(c) for c in zip(*curves["f1_f2"], strict=True)],
            "||f1 - y|| (MSE)": [list(c) for c in zip(*curves["f1_y"], strict=True)],
        }
        figures.append(_figure(
            ctx, f"fig2_{space}", metrics["epochs"], per_epoch, xlabel="epoch", ylabel="MSE",
            title=f"Fig. 2: Assumption 1, {space} inputs ({ctx.preset})",
        ))  # fmt: skip
    bar.close()
    metrics["claim_evidence"] = evidence
    return Result(metrics=metrics, claims=claims, figures=figures, comparison=comparison)


# ------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------

_SYNTH_FULL = {
    "d_x": 1000,
    "d_i": 1000,
    "embedding_dim": 10_000,
    "width": 100,
    "g_hidden": 10,
    "depths": list(range(2, 10)),
    "n_train": 30_000,
    "n_test": 5_000,
    "n_conditions": None,  # None: every sample its own I (the paper); N: N training conditions
    "batch_size": 200,
    "lr": 0.01,
    "epochs": 20,
    "seeds": 5,
    **_TUNE,
}

_SYNTH_CLAIMS = [
    "when f and e have 3 or more layers, the hypernetwork outperforms the embedding",
    "the hypernetwork's error improves as the number of layers of f grows",
    "the embedding method's error does not improve with the number of layers of e",
]

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
            | {  # d = 20 (E = 10 d as in the paper): learnable from the paper's 30,000 samples
                "d_x": 20,
                "d_i": 20,
                "embedding_dim": 200,
                "width": 100,
                "depths": [2, 3, 5, 7],
                "n_test": 2_000,
                "epochs": 10,  # keeps `make demo` within 3 minutes on 2 cores
                "seeds": 2,
                "cpu_threads": 1,  # tiny matmuls: one thread is faster than two
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
                "tune_lrs": [0.01, 0.03],
                "tune_epochs": 1,
            },
        },
        run=run_synthetic_depth,
        paper_reference={
            "figure": "Fig. 1a (no numbers in the text; error bars: SD over 100 repetitions)",
            "claims": _SYNTH_CLAIMS,
            "epochs": "not stated in the paper (ours: config 'epochs')",
            "beyond the paper": "headline MSE is on conditions I never seen in training; "
            "'_seen_conditions' is fresh x with training conditions",
        },
    )
)

_FIG1B_FULL = _SYNTH_FULL | {
    "d_x": 100,
    "d_i": 100,
    "dims": list(range(1, 9)),
    "f_dim_step": 100,
    "e_dim_step": 1000,
}
del _FIG1B_FULL["depths"], _FIG1B_FULL["embedding_dim"]

register(
    Experiment(
        name="modularity-synthetic-embedding-dim",
        paper=PAPER,
        reproduces="Fig. 1b",
        summary="Test MSE on y(x, I) = <x, h(I)> as the embedding dimension grows: f = "
        "100-100-100i-N_g, e = 100-100-100-1000i, g, q: d_in-10-1 (d_x = d_I = 100).",
        configs={
            "full": _FIG1B_FULL,
            "quick": _FIG1B_FULL
            | {  # d = 20, embedding dims scaled by 1/5 like d_x (see the depth experiment)
                "d_x": 20,
                "d_i": 20,
                "f_dim_step": 20,
                "e_dim_step": 200,
                "dims": [1, 2, 4, 8],
                "n_test": 2_000,
                "epochs": 15,
                "seeds": 2,
            },  # fmt: skip
            "tiny": _FIG1B_FULL
            | {
                "d_x": 8,
                "d_i": 8,
                "width": 16,
                "dims": [1, 2],
                "f_dim_step": 8,
                "e_dim_step": 16,
                "n_train": 400,
                "n_test": 200,
                "batch_size": 50,
                "epochs": 2,
                "seeds": 2,
            },
        },
        run=run_synthetic_embedding_dim,
        paper_reference={
            "figure": "Fig. 1b (no numbers in the text)",
            "claims": [
                "the embedding method's error does not improve as the embedding dimension grows",
                "the embedding method is much worse than the hypernetwork",
            ],
            "sizes": "N_g = 1010, N_q = 10^4(i+1)+10 (paper; with d_x = 100 it is "
            "(100 + 1000i)·10 + 10), N_f = 10^4+10^4 i+10^5 i, N_e = 2·10^4+10^5 i",
        },
    )
)

_IMAGE = {
    "dataset": "mnist",
    "download": False,  # data files must be in --data-dir; --set download=true fetches them
    "width": None,  # None: 50 for MNIST / Fashion-MNIST, 100 for CIFAR-10 (Sec. 5)
    "g_hidden": 10,
    "n_train": None,  # None: the whole training set
    "n_test": None,
}

_ROT_FULL = _IMAGE | {
    "depths": list(range(2, 10)),
    "batch_size": 64,
    "lr": 0.01,
    "epochs": 10,
    "seeds": 5,
    **_TUNE,
}
_ROT_TINY = {"n_train": 256, "n_test": 128, "epochs": 1, "seeds": 2, "width": 8,
             "tune_lrs": [0.01, 0.1], "tune_epochs": 1}  # fmt: skip

register(
    Experiment(
        name="modularity-rotation",
        paper=PAPER,
        reproduces="Fig. 3",
        summary="Rotation prediction (12 classes): test error of hypernetwork vs embedding "
        "method as the depth k of f and e grows (g: d-10-12; f, e: width 50 MNIST / 100 CIFAR).",
        configs={
            "full": _ROT_FULL,
            "quick": _ROT_FULL
            | {"n_train": 20_000, "n_test": 2_000, "epochs": 3, "seeds": 2, "depths": [2, 4, 6]},
            "tiny": _ROT_FULL | _ROT_TINY | {"depths": [2, 3]},
        },
        run=run_rotation,
        paper_reference={
            "figure": "Fig. 3a (MNIST), 3b (CIFAR-10); no numbers in the text",
            "claims": [
                "the hypernetwork outperforms the embedding method by a wide margin",
                "the hypernetwork's error improves with its depth; the embedding's does not",
            ],
            "protocol": "NLL, 10 epochs, SGD lr 0.01, no regularisation (Sec. 5); batch 64 "
            "and 12 classes from the authors' code (notes A.2)",
        },
    )
)

_EDIM_FULL = _ROT_FULL | {
    "depth": 3,
    "dims": list(range(2, 10)),
    "e_dim_step": 10_000,
    "f_dim_step": 50,
}
del _EDIM_FULL["depths"]

register(
    Experiment(
        name="modularity-embedding-dim-images",
        paper=PAPER,
        reproduces="App. 1.2",
        summary="Rotation prediction as the embedding dimension grows: e of 3 layers with output "
        "10^4(i+1) (authors' code), f with last hidden width 50(i+1).",
        configs={
            "full": _EDIM_FULL,
            "quick": _EDIM_FULL
            | {
                "n_train": 10_000,
                "n_test": 2_000,
                "epochs": 3,
                "seeds": 2,
                "dims": [0, 2, 4],
                "e_dim_step": 2000,
            },  # fmt: skip
            "tiny": _EDIM_FULL | _ROT_TINY | {"dims": [0, 1], "e_dim_step": 16, "f_dim_step": 8},
        },
        run=run_embedding_dim_images,
        paper_reference={
            "figure": "appendix Sec. 1.2 (not in our copy of the paper; sizes from the code)",
            "claims": [
                "increasing the embedding dimension does not close the gap to hypernetworks"
            ],  # fmt: skip
        },
    )
)

_LR_FULL = _ROT_FULL | {
    "depth": 4,
    "lrs": [1e-4 * 10 ** (j / 4) for j in range(2, 10)],
}
del _LR_FULL["depths"]
for _k in _TUNE:
    del _LR_FULL[_k]

register(
    Experiment(
        name="modularity-lr-sensitivity",
        paper=PAPER,
        reproduces="App. 1.4",
        summary="Rotation prediction at several learning rates (authors' grid 1e-4·10^(j/4), "
        "j = 2..9) for both models, f and e of 4 layers.",
        configs={
            "full": _LR_FULL,
            "quick": _LR_FULL
            | {
                "n_train": 20_000,
                "n_test": 2_000,
                "epochs": 3,
                "seeds": 2,
                "lrs": [0.001, 0.003, 0.01, 0.03],
            },  # fmt: skip
            "tiny": _LR_FULL
            | {k: v for k, v in _ROT_TINY.items() if not k.startswith("tune")}
            | {"lrs": [0.01, 0.1], "depth": 2},
        },
        run=run_lr_sensitivity,
        paper_reference={
            "figure": "appendix Sec. 1.4 (not in our copy of the paper)",
            "claims": ["the results are consistent when varying the learning rate"],
        },
    )
)

_COLOR_FULL = _IMAGE | {
    "g_hidden": 16,
    "pixels_per_image": 64,
    "depths": list(range(2, 10)),
    "batch_size": 64,
    "lr": 0.01,
    "epochs": 10,
    "seeds": 5,
    **_TUNE,
}

register(
    Experiment(
        name="modularity-colorization",
        paper=PAPER,
        reproduces="App. 1.3",
        summary="Colorization: predict a pixel's RGB from its position and gray value (g, q) "
        "given the gray image I (f, e); MNIST digits painted by class, or CIFAR-10.",
        configs={
            "full": _COLOR_FULL,
            "quick": _COLOR_FULL
            | {"n_train": 10_000, "n_test": 1_000, "epochs": 3, "seeds": 2, "depths": [2, 4, 6]},
            "tiny": _COLOR_FULL | _ROT_TINY | {"pixels_per_image": 8, "depths": [2, 3]},
        },
        run=run_colorization,
        paper_reference={
            "figure": "appendix Sec. 1.3 (not in our copy of the paper; the authors' code "
            "has only a stub: 3 outputs, MSE)",
            "claims": ["the hypernetwork outperforms the embedding method at similar size"],
            "design": "ours: MNIST digit of class c painted in colour palette[c] (so the colour "
            "must be inferred from I); g = 3-16-16-3, E = N_g",
        },
    )
)

_A1_FULL = {
    "inputs": ["mnist", "uniform"],
    "download": False,
    "target_channels": [20, 50],
    "hidden": 100,
    "n_train": None,
    "n_test": 10_000,
    "uniform_per_epoch": 10_000,
    "batch_size": 64,
    "lr": 0.01,
    "momentum": 0.5,
    "epochs": 50,
    "seeds": 5,
}

register(
    Experiment(
        name="modularity-unique-approximator",
        paper=PAPER,
        reproduces="Fig. 2",
        summary="Assumption 1: two shallow ReLU MLPs (100 hidden) from different inits fitted "
        "to a random conv target; MSE(f1, f2) vs MSE(f1, y) per epoch (MNIST, U[-1,1]^784).",
        configs={
            "full": _A1_FULL,
            "quick": _A1_FULL | {"n_train": 10_000, "n_test": 2_000, "epochs": 20, "seeds": 2},
            "tiny": _A1_FULL
            | {
                "n_train": 256,
                "n_test": 128,
                "uniform_per_epoch": 256,
                "epochs": 2,
                "seeds": 2,
            },  # fmt: skip
        },
        run=run_unique_approximator,
        paper_reference={
            "figure": "Fig. 2a (MNIST), 2b (CIFAR-10), 2c ([-1, 1]^{28x28}); no numbers",
            "claims": [
                "the distance between f1 and f2 is significantly smaller than their "
                "distances from y"
            ],  # fmt: skip
            "protocol": "MSE, SGD lr 0.01 momentum 0.5, 50 epochs (Sec. 5); batch 64, 10,000 "
            "fresh uniform samples per epoch, unit-norm rows at init (authors' code)",
        },
    )
)
