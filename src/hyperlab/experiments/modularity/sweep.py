"""The sweep engine of the modularity experiments: train both models at every swept value.

[`fit_eval`][hyperlab.experiments.modularity.sweep.fit_eval] trains one model with
[`RunContext.fit`][hyperlab.experiments.base.RunContext.fit] and scores it on every
split;
[`sweep`][hyperlab.experiments.modularity.sweep.sweep] loops over seeds (outer: one data draw per
seed) and swept values, with the
optional per-model learning-rate search on a validation split (``--set tune=true``, the
reviewers' fairness request). Each run records mean, std and per-seed values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyperlab.experiments.base import RunContext
from hyperlab.experiments.config import Config, ConfigError, param
from hyperlab.experiments.stats import nanmean, nanstd
from hyperlab.hypernet import EmbeddingModel, HyperModel
from hyperlab.primary import BoundPrimary, count_parameters
from hyperlab.train import TrainingDiverged

MODELS = ("hypernetwork", "embedding")


@dataclass(frozen=True)
class SweepConfig(Config):
    """Training settings shared by every modularity sweep (SGD, Sec. 5)."""

    seeds: int = param(5, "repetitions: one data draw and one initialisation per seed", min=1)
    epochs: int = param(10, "training epochs per model", min=1)
    lr: float = param(0.01, "SGD learning rate", positive=True)
    momentum: float = param(0.0, "SGD momentum", min=0)
    batch_size: int = param(64, "minibatch size", min=1)
    batch_seeds: bool = param(
        True,
        "train the seeds of each swept value side by side as one "
        "batched model (fit_seeds; per-seed results as one after "
        "another, to float tolerance)",
    )
    lr_per_value: list[float] | None = param(
        None, "one SGD learning rate per swept value, for both models (None: lr everywhere); "
        "e.g. a smaller one where a shallow f diverges at lr", positive=True)  # fmt: skip


@dataclass(frozen=True)
class TunedSweepConfig(SweepConfig):
    """A sweep with the optional per-model learning-rate search (Review 2's fairness request)."""

    tune: bool = param(False, "search each model's learning rate on a validation split first")
    tune_lrs: list[float] = param([0.001, 0.003, 0.01, 0.03, 0.1], "candidate learning rates",
                                  positive=True)  # fmt: skip
    tune_epochs: int | None = param(None, "epochs per candidate (None: same as epochs)", min=1)
    val_fraction: float = param(0.1, "share of the training set held out for the search "
                                "(seed 0's data)", positive=True)  # fmt: skip

    def validate(self) -> None:
        if self.val_fraction >= 1:
            raise ConfigError(f"val_fraction: expected a share below 1, got {self.val_fraction}")


#: The networks of the two models: f, g (hypernetwork g(x; f(I))) and e, q (q(x, e(I))).
NETWORKS = ("f", "e", "g", "q")


@dataclass(frozen=True)
class Conventions(Config):
    """The modelling choices that decide the modularity results (inits, biases).

    The defaults are the authors' released code (notes A.2): every layer PyTorch's default
    init, biases in f, e and q, none in g (the paper's N_g = 10 d_x + 10 counts no biases).
    """

    init: str = param("standard", "f's output layer: 'standard' = nn.Linear's default init "
                      "(authors' code), 'hyperfan' = hyperfan-in (Chang et al. 2020)",
                      choices=("standard", "hyperfan"))  # fmt: skip
    biases: list[str] = param(["f", "e", "q"], "networks with bias terms, of f, e, g, q "
                              "(authors' code: f, e, q)", choices=NETWORKS,
                              nonempty=False)  # fmt: skip
    trunk_init: str = param("standard", "hidden layers of f and all of e: 'standard' = "
                            "nn.Linear's default (authors' code), 'he' = He-uniform weights "
                            "U(±√(6/fan_in)) and zero biases",
                            choices=("standard", "he"))  # fmt: skip

    def bias(self, net: str) -> bool:
        """Whether network ``net`` (one of f, e, g, q) has bias terms."""
        return net in self.biases

    def finish(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        """Apply ``trunk_init`` to a built model (f's trunk, or e) and return it."""
        if self.trunk_init != "he":
            return model
        if isinstance(model, HyperModel) and isinstance(model.f.trunk, BoundPrimary):
            he_init_(model.f.trunk, generator)
            model.f.reset_head(generator=generator)  # its calibration saw the old trunk
        elif isinstance(model, EmbeddingModel):
            he_init_(model.e, generator)
        return model


@torch.no_grad()
def he_init_(net: BoundPrimary, generator: torch.Generator) -> None:
    """He-uniform init of a bound MLP in place: weights U(±√(6/fan_in)), zero biases, so a
    deep ReLU stack keeps its input signal (PyTorch's default shrinks it ~6x in variance per
    layer)."""
    for spec in net.primary.layout:
        p = net.get_parameter(spec.name)
        if spec.role == "weight":
            bound = math.sqrt(6.0 / spec.fan_in)
            p.copy_(torch.rand(p.shape, generator=generator) * (2 * bound) - bound)
        else:
            p.zero_()


@dataclass
class Task:
    """One seed's data and how to train on and score it.

    ``data["train"]`` is what ``fit`` iterates over (``transform`` turns a raw batch into
    model inputs, drawing fresh randomness such as rotation angles). ``freeze(raw, tag)`` turns
    a raw split into fixed evaluation data (fixed angles/pixels); ``evaluate(model, frozen)``
    returns named scores. ``splits`` maps a metric suffix to a key of ``data`` holding frozen
    evaluation data; the suffix ``""`` is the headline split. ``track`` maps a curve label to a
    split scored after every epoch (the training curves); ``info`` holds facts of this seed's
    data (e.g. Var y), recorded per seed.
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
    track: dict[str, str] = field(default_factory=dict)
    info: dict[str, float] = field(default_factory=dict)


def fit_eval(
    ctx: RunContext[SweepConfig],
    model: nn.Module,
    task: Task,
    *,
    lr: float,
    epochs: int,
    key: Sequence[object],
    splits: Mapping[str, str] | None = None,
    curves: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """Train ``model`` (SGD, checkpointed, resumable) and score it on ``splits``.

    Returns ``{score_name + suffix: value}``; a diverged run scores NaN everywhere. With
    ``curves`` (a dict to fill), ``task.track``'s splits are scored after every epoch and
    ``curves[f"{score}_{label}"]`` gets one value per epoch (and ``train_loss``, the running
    mean of the minibatch losses).
    """
    cfg = ctx.config
    splits = task.splits if splits is None else splits
    track = task.track if curves is not None else {}

    try:
        history = ctx.fit(
            model, task.loss, task.data["train"], key=(*key, f"lr{lr:g}"), seed_key=key,
            epochs=epochs, batch_size=cfg.batch_size, lr=lr, momentum=cfg.momentum,
            desc="-".join(map(str, key)), transform=task.transform,
            evaluate=_per_epoch(task, track) if track else None,
        )  # fmt: skip
    except TrainingDiverged:
        return _diverged_scores(model, task, splits)
    return _scores(history, model, task, splits, track, curves)


def _per_epoch(task: Task, track: Mapping[str, str]) -> Callable[[nn.Module], dict[str, float]]:
    """``fit``'s per-epoch evaluation: every tracked split's scores, suffixed by its label."""

    def per_epoch(m: nn.Module) -> dict[str, float]:
        return {f"{name}_{label}": v for label, split in track.items()
                for name, v in task.evaluate(m, task.data[split]).items()}  # fmt: skip

    return per_epoch


def _diverged_scores(model: nn.Module, task: Task, splits: Mapping[str, str]) -> dict[str, float]:
    head = {k: v[:2] for k, v in task.data[next(iter(splits.values()))].items()}
    probe = task.evaluate(model, head)
    return {f"{name}{suffix}": math.nan for suffix in splits for name in probe}


def _scores(history: Any, model: nn.Module, task: Task, splits: Mapping[str, str],
            track: Mapping[str, str],
            curves: dict[str, list[float]] | None) -> dict[str, float]:  # fmt: skip
    """A trained model's scores on ``splits`` (those tracked after the last epoch are taken
    from its record) and its curves."""
    if curves is not None and track:
        ends = tuple(f"_{label}" for label in track)
        keys = [k for k in history.records[-1] if k.endswith(ends)] + ["train_loss"]
        curves.update({k: [r.get(k, math.nan) for r in history.records] for k in keys})
    last = history.records[-1] if history.records else {}
    out: dict[str, float] = {}
    for suffix, split in splits.items():
        label = next((lab for lab, sp in track.items() if sp == split), None)
        scored = {k[: -len(label) - 1]: v for k, v in last.items()
                  if label and k.endswith(f"_{label}")}  # fmt: skip
        # a split scored after the last epoch is not scored again
        for name, value in (scored or task.evaluate(model, task.data[split])).items():
            out[f"{name}{suffix}"] = value
    return out


def fit_eval_seeds(ctx: RunContext[SweepConfig], models: list[nn.Module], tasks: list[Task], *,
                   lr: float, epochs: int, key: Sequence[object],
                   curves: list[dict[str, list[float]]]) -> list[dict[str, float]]:  # fmt: skip
    """[`fit_eval`][hyperlab.experiments.modularity.sweep.fit_eval] for every seed's model and
    task, trained side by side
    ([`RunContext.fit_seeds`][hyperlab.experiments.base.RunContext.fit_seeds]): the
    same checkpoints, scores and curves, seed by seed."""
    cfg = ctx.config
    track = tasks[0].track
    results = ctx.fit_seeds(
        models, tasks[0].loss, [t.data["train"] for t in tasks],
        keys=[(*key, s, f"lr{lr:g}") for s in range(len(tasks))],
        seed_keys=[(*key, s) for s in range(len(tasks))], epochs=epochs,
        batch_size=cfg.batch_size, lr=lr, momentum=cfg.momentum,
        transform=tasks[0].transform,
        evaluate=[_per_epoch(t, track) if track else None for t in tasks],
    )  # fmt: skip
    return [_diverged_scores(m, t, t.splits) if isinstance(r, TrainingDiverged)
            else _scores(r, m, t, t.splits, track, c)
            for r, m, t, c in zip(results, models, tasks, curves, strict=True)]  # fmt: skip


def last_epochs_mean(curve: Sequence[float], n: int = 3) -> float:
    """Mean of the last ``n`` epochs of a curve (NaN if any is not finite)."""
    tail = list(curve[-n:])
    return sum(tail) / len(tail) if tail and all(map(math.isfinite, tail)) else math.nan


def tune_lr(
    ctx: RunContext[Any],
    build: Callable[[torch.Generator], nn.Module],
    task: Task,
    key: Sequence[object],
    tuning: TunedSweepConfig,
    conventions: Conventions,
) -> dict[str, Any]:
    """Learning-rate search: train on the first (1 - val_fraction) of the training set for
    each candidate, score ``task.primary`` on the held-out rest, return the best (lowest)."""
    train = task.data["train"]
    n = next(iter(train.values())).shape[0]
    n_val = max(1, int(round(n * tuning.val_fraction)))
    if n_val >= n:
        raise ConfigError(f"val_fraction: {tuning.val_fraction} leaves no training data")
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
    epochs = tuning.tune_epochs or tuning.epochs
    scores = []
    for lr in tuning.tune_lrs:
        model = build(ctx.generator("tune-init", *key))
        model = conventions.finish(model, ctx.generator("tune-trunk-init", *key))
        res = fit_eval(ctx, model, val_task, lr=lr, epochs=epochs, key=("tune", *key))
        scores.append(res[task.primary])
    finite = [(s, lr) for s, lr in zip(scores, tuning.tune_lrs, strict=True) if math.isfinite(s)]
    best = min(finite)[1] if finite else tuning.lr
    return {"lrs": list(tuning.tune_lrs), "val_scores": scores, "best_lr": float(best)}


def _rate_rule(cfg: SweepConfig, values: Sequence[Any], lr: Callable[[str, Any], float] | None,
               tune: bool) -> Callable[[str, Any], float]:  # fmt: skip
    """The learning rate per (model, value): ``lr``, else ``lr_per_value``, else ``cfg.lr``."""
    per_value = cfg.lr_per_value
    if per_value is not None and (lr is not None or tune):
        why = "the learning-rate search picks them" if tune else "it sweeps the learning rate"
        raise ConfigError(f"lr_per_value: not used by this run ({why}); leave it unset")
    if per_value is not None:
        if len(per_value) != len(values):
            raise ConfigError(f"lr_per_value: expected {len(values)} learning rates (one per "
                              f"swept value {list(values)}), got {per_value}")  # fmt: skip
        rates = dict(zip(map(repr, values), per_value, strict=True))
        return lambda name, v: rates[repr(v)]
    return lr or (lambda name, v: cfg.lr)


@dataclass
class _Sweep:
    """What a sweep collects: scores per value and seed, curves, task facts, conditioning."""

    values: Sequence[Any]
    table: dict[str, list[list[float]]] = field(default_factory=dict)
    curves: dict[str, list[list[dict[str, list[float]]]]] = field(default_factory=dict)
    task_info: dict[str, list[float]] = field(default_factory=dict)
    conditioning: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, i: int, scores: Mapping[str, float]) -> None:
        for score, value in scores.items():
            rows = self.table.setdefault(f"{name}_{score}", [[] for _ in self.values])
            rows[i].append(value)

    def metrics(self, chosen: dict[str, list[float]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, rows in self.table.items():
            out[key] = [nanmean(r) for r in rows]
            out[f"{key}_std"] = [nanstd(r) for r in rows]
            out[f"{key}_per_seed"] = rows
        out["learning_rates"] = chosen
        if self.curves:
            out["curves"] = self.curves
        if self.task_info:
            out["task_info"] = self.task_info
        out["conditioning_at_init"] = self.conditioning
        return out


def sweep(
    ctx: RunContext[SweepConfig],
    *,
    values: Sequence[Any],
    make_task: Callable[[int], Task],
    builders: Mapping[str, Callable[[Any, torch.Generator], nn.Module]],
    conventions: Conventions,
    tuning: TunedSweepConfig | None,
    lr: Callable[[str, Any], float] | None = None,
    on_model: Callable[[str, Any, nn.Module], None] | None = None,
) -> tuple[dict[str, Any], dict[str, list[list[float]]]]:
    """Train every model at every swept value for ``config.seeds`` seeds.

    Seeds are the outer loop (one task, i.e. one dataset draw, per seed); with
    ``batch_seeds`` every seed's task is built first and the seeds of each (value, model) train
    side by side (``fit_eval_seeds``).
    ``conventions``
    finishes each built model (trunk init); with ``tuning`` given and its ``tune`` on, each
    model gets its own learning rate per swept value, chosen on seed 0's validation split.
    Returns ``(metrics, per_seed)``: ``metrics[f"{model}_{score}"]`` is the mean over seeds per
    value, with ``_std`` and ``_per_seed`` (``[value][seed]``) alongside; ``per_seed`` is the same
    per-seed table keyed like ``metrics``. Tasks with ``track`` add ``metrics["curves"]``
    (``[model][value][seed]`` -> per-epoch series) and ``f"{model}_{score}_last3"`` (the mean
    of the last three epochs of the tracked ``test`` curve); ``info`` goes to
    ``metrics["task_info"]`` (per seed).
    """
    cfg = ctx.config
    tune = bool(tuning is not None and tuning.tune)
    rule = _rate_rule(cfg, values, lr, tune)
    chosen: dict[str, list[float]] = {name: [rule(name, v) for v in values] for name in builders}
    tuned: dict[str, list[dict[str, Any]]] = {name: [] for name in builders}
    out = _Sweep(values)
    bar = tqdm(total=cfg.seeds * len(values) * len(builders), desc=ctx.name,
               disable=not ctx.progress)  # fmt: skip
    # side by side: every seed's task at once, then one batched run per (value, model)
    groups = [list(range(cfg.seeds))] if cfg.batch_seeds else [[s] for s in range(cfg.seeds)]
    for seeds in groups:
        tasks = [make_task(s) for s in seeds]
        for task in tasks:
            for k, value in task.info.items():
                out.task_info.setdefault(k, []).append(value)
        for i, v in enumerate(values):
            for name, build in builders.items():
                if tune and seeds[0] == 0:
                    assert tuning is not None
                    info = tune_lr(ctx, functools.partial(_build_at, build, v), tasks[0],
                                   (name, v), tuning, conventions)  # fmt: skip
                    tuned[name].append({"value": v, **info})
                    chosen[name][i] = info["best_lr"]
                models = [conventions.finish(build(v, ctx.generator("init", name, v, s)),
                                             ctx.generator("trunk-init", name, v, s))
                          for s in seeds]  # fmt: skip
                if seeds[0] == 0:
                    if on_model is not None:
                        on_model(name, v, models[0])
                    out.conditioning.setdefault(name, []).append(
                        conditioning_at_init(models[0], tasks[0])
                    )
                scores = _train_cell(ctx, models, tasks, chosen[name][i], (name, v), seeds, out,
                                     name, i)  # fmt: skip
                shown = scores[-1].get(tasks[0].primary, math.nan)
                bar.set_postfix(seed=seeds[-1], value=v, model=name[:5], score=f"{shown:.3g}")
                bar.update(len(seeds))
        del tasks
    bar.close()
    metrics = out.metrics(chosen)
    if tune:
        metrics["tuning"] = tuned
    return metrics, out.table


def _build_at(build: Callable[[Any, torch.Generator], nn.Module], v: Any,
              gen: torch.Generator) -> nn.Module:  # fmt: skip
    return build(v, gen)


def _train_cell(ctx: RunContext[SweepConfig], models: list[nn.Module], tasks: list[Task],
                lr: float, key: tuple[Any, Any], seeds: list[int], out: _Sweep, name: str,
                i: int) -> list[dict[str, float]]:  # fmt: skip
    """Train and score one (model, value) for ``seeds`` (side by side when there are several);
    record each seed's scores and curves in ``out``."""
    series: list[dict[str, list[float]]] = [{} for _ in seeds]
    epochs = ctx.config.epochs
    if len(seeds) > 1:
        scores = fit_eval_seeds(ctx, models, tasks, lr=lr, epochs=epochs, key=key, curves=series)
    else:
        scores = [fit_eval(ctx, models[0], tasks[0], lr=lr, epochs=epochs,
                           key=(*key, seeds[0]), curves=series[0])]  # fmt: skip
    primary = tasks[0].primary
    for sc, se in zip(scores, series, strict=True):
        if tasks[0].track:
            out.curves.setdefault(name, [[] for _ in out.values])[i].append(se)
            sc[f"{primary}_last3"] = last_epochs_mean(se.get(f"{primary}_test", [math.nan]))
        out.add(name, i, sc)
    return scores


@torch.no_grad()
def conditioning_at_init(model: nn.Module, task: Task, n: int = 512) -> float:
    """How much the conditioning output depends on I before training: over ``n`` conditions of
    the headline split, the mean std of each coordinate of θ = f(I) (hypernetwork) or e(I)
    (embedding) divided by the mean |mean| of the coordinates. Near 0: the output is nearly
    constant in I (e.g. a deep ReLU f under PyTorch's default init, whose input signal shrinks
    ~6x in variance per layer while the biases stay)."""
    split = task.data[task.splits[""]]
    if "cond" not in split:
        return math.nan
    device = next(model.parameters()).device
    cond = split["cond"][:n].to(device)
    if isinstance(model, HyperModel):
        out = model.f.flat(cond)
    elif isinstance(model, EmbeddingModel):
        out = model.e(cond)
    else:
        return math.nan
    return float(out.std(0).mean() / out.mean(0).abs().mean().clamp_min(1e-30))


def counts_recorder(counts: list, key: str) -> Callable[[str, Any, nn.Module], None]:
    """An ``on_model`` hook recording N_f, N_g (hypernetwork) and N_e, N_q (embedding)."""

    def record(name: str, v: Any, model: nn.Module) -> None:
        if isinstance(model, HyperModel):
            counts.append({key: v, "N_f": count_parameters(model.f), "N_g": model.g.layout.numel})
        elif isinstance(model, EmbeddingModel):
            row = next(c for c in counts if c[key] == v)
            row.update(N_e=count_parameters(model.e), N_q=count_parameters(model.q))

    return record


def tune_notes(metrics: Mapping) -> list[str]:
    """One note per model with the learning rates the search chose (none without tuning)."""
    if "tuning" not in metrics:
        return []
    chosen = metrics["learning_rates"]
    return [f"tuned learning rates ({name}): {chosen[name]}" for name in chosen]
