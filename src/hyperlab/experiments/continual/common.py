"""What SplitMNIST and PermutedMNIST share: the config of a task sequence and its learners, one
run over seeds and learners (HNET, fine-tuning, EWC on the same target), the claims, the
accuracy-matrix figure and the rows.

Every learner of one seed sees the same tasks and the same batch order; fine-tuning and EWC
start from the same target weights. The hypernetwork's trainable parameters (Θ_h, chunk and
task embeddings) are counted beside the target's, as the paper's compression ratio.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from hyperlab.continual import (
    EWC,
    ContinualConfig,
    ContinualResult,
    FineTune,
    Hypernet,
    Learner,
    TaskConditioned,
)
from hyperlab.experiments.base import Result, RunContext
from hyperlab.experiments.claims import Claim, Verdict, binomial_se, compare, within
from hyperlab.experiments.config import Config, param
from hyperlab.experiments.stats import fmt_mean_std, nanmean, nanstd
from hyperlab.primary import MLP, count_parameters

Task = Mapping[str, torch.Tensor]
LEARNERS = ("hnet", "finetune", "ewc")
LABELS = {"hnet": "HNET", "finetune": "fine-tuning", "ewc": "EWC"}


@dataclass(frozen=True)
class ContinualExperimentConfig(Config):
    """A task sequence, the target MLP, the task-conditioned hypernetwork and the training of
    each task (defaults: the released code's SplitMNIST set-up, chrhenning/hypercl
    mnist/train_args_default.py; the subclasses set their own)."""

    seeds: int = param(5, "repetitions (each its own init and batch order)", min=1)
    learners: list[str] = param(list(LEARNERS), "what to train on the same target: 'hnet' (the "
                                "hypernetwork), 'finetune' (no regulariser), 'ewc'",
                                choices=LEARNERS)  # fmt: skip
    n_tasks: int = param(5, "tasks in the sequence", min=1)
    n_train: int | None = param(None, "training images per task (None: all)", min=1)
    n_test: int | None = param(None, "test images per task (None: all)", min=1)
    heads: str = param(
        "multi",
        "'multi': a head of its own per task (CL1; CL3 infers the "
        "head); 'single': one shared head (CL2)",
        choices=("multi", "single"),
    )
    target_hidden: list[int] = param([400, 400], "hidden widths of the target MLP (ReLU)", min=1)
    embedding_dim: int = param(96, "task embedding size", min=1)
    chunk_embedding_dim: int = param(96, "chunk embedding size", min=1)
    hnet_hidden: list[int] = param([10, 10], "hidden widths of the hypernetwork", min=1)
    hnet_activation: str = param("relu", "the hypernetwork's activation",
                                 choices=("relu", "elu", "tanh", "sigmoid"))  # fmt: skip
    chunk_size: int | None = param(42_000, "target weights per chunk (None: no chunking)", min=1)
    hnet_init: str = param("authors", "'authors': Xavier weights, zero biases, N(0, 1) "
                           "embeddings (released code); 'hyperfan': hyperlab's",
                           choices=("authors", "hyperfan"))  # fmt: skip
    beta: float = param(0.01, "β of the output regulariser (Eq. 2)", min=0)
    lookahead: bool = param(True, "regularise at Θ_h + ΔΘ_h, the step the optimizer takes")
    iterations: int = param(2000, "training steps per task", min=1)
    batch_size: int = param(128, "minibatch size", min=1)
    lr: float = param(1e-3, "Adam learning rate (the hypernetwork, and the target of the "
                      "baselines)", positive=True)  # fmt: skip
    embedding_lr: float = param(1e-3, "Adam learning rate of the task embedding", positive=True)
    ewc_lambda: float = param(
        1e5,
        "EWC's λ (van de Ven et al.'s value for task-incremental "
        "SplitMNIST, GMvandeVen/continual-learning params)",
        min=0,
    )
    fisher_samples: int = param(1000, "training samples of EWC's Fisher estimate", min=1)

    def train_config(self, seed: int) -> ContinualConfig:
        return ContinualConfig(iterations=self.iterations, batch_size=self.batch_size,
                               lr=self.lr, embedding_lr=self.embedding_lr, beta=self.beta,
                               lookahead=self.lookahead, ewc_lambda=self.ewc_lambda,
                               fisher_samples=self.fisher_samples, heads=self.heads,  # type: ignore[arg-type]
                               seed=seed)  # fmt: skip


def _subset(tasks: Sequence[Task], n: int | None) -> list[Task] | Sequence[Task]:
    if n is None:
        return tasks
    return [{k: v[:n] for k, v in t.items()} for t in tasks]


class _Subset(Sequence[Task]):
    """The first n samples of each task of a lazy sequence, still read when reached."""

    def __init__(self, tasks: Sequence[Task], n: int | None):
        self.tasks, self.n = tasks, n

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, t):
        task = self.tasks[t]
        return task if self.n is None else {k: v[: self.n] for k, v in task.items()}


def build_learner(cfg: ContinualExperimentConfig, name: str, in_features: int, classes: int,
                  ctx: RunContext[Any], seed: int) -> Learner:  # fmt: skip
    """Learner ``name`` for seed ``seed``: the target MLP (``classes`` outputs per task with
    multi-head) generated by a fresh hypernetwork, or trained directly."""
    outputs = classes * (cfg.n_tasks if cfg.heads == "multi" else 1)
    target = MLP([in_features, *cfg.target_hidden, outputs], "relu")
    tc = cfg.train_config(ctx.seed_for("batches", seed))
    if name == "hnet":
        model = TaskConditioned(target, cfg.n_tasks, embedding_dim=cfg.embedding_dim,
                                hidden=cfg.hnet_hidden, activation=cfg.hnet_activation,
                                chunk_size=cfg.chunk_size,
                                chunk_embedding_dim=cfg.chunk_embedding_dim,
                                init=cfg.hnet_init,  # type: ignore[arg-type]
                                generator=ctx.generator("hnet", seed))  # fmt: skip
        return Hypernet(model, classes, tc)
    bound = target.bind(generator=ctx.generator("target", seed))  # the same for both baselines
    return FineTune(bound, classes, tc) if name == "finetune" else EWC(bound, classes, tc)


def parameter_counts(cfg: ContinualExperimentConfig, in_features: int, classes: int,
                     ctx: RunContext[Any]) -> dict[str, Any]:  # fmt: skip
    """The target's weights, the hypernetwork's trainable parameters (Θ_h with the chunk
    embeddings, and the task embeddings) and their ratio (the paper's compression ratio)."""
    hnet = build_learner(cfg, "hnet", in_features, classes, ctx, 0).model
    assert isinstance(hnet, TaskConditioned)
    theta = count_parameters(hnet.hnet)
    embeddings = sum(e.numel() for e in hnet.embeddings)
    n_target = hnet.target.layout.numel
    return {"target": n_target, "hnet": theta, "task_embeddings": embeddings,
            "compression_ratio": (theta + embeddings) / n_target}  # fmt: skip


def run_sequence(ctx: RunContext[ContinualExperimentConfig],
                 tasks: Callable[[int], tuple[Sequence[Task], Sequence[Task]]],
                 in_features: int, classes: int) -> dict[str, Any]:  # fmt: skip
    """Every learner of the config on every seed's tasks (``tasks(seed)``: the seed's train
    and test task sequences); the metrics of the record."""
    cfg = ctx.config
    out: dict[str, Any] = {name: {"accuracy": [], "accuracy_inferred": [], "task_inference": [],
                                  "train_loss": [], "seconds": []}
                           for name in cfg.learners}  # fmt: skip
    bar = tqdm(total=cfg.seeds * len(cfg.learners), desc=ctx.name, disable=not ctx.progress)
    n_test: list[int] = []
    for s in range(cfg.seeds):
        train_all, test_all = tasks(s)
        train_tasks = _Subset(train_all, cfg.n_train)
        test_tasks = _subset(test_all, cfg.n_test)
        n_test = [len(t["y"]) for t in test_tasks]
        for name in cfg.learners:
            learner = build_learner(cfg, name, in_features, classes, ctx, s)
            res = ctx.fit_tasks(learner, train_tasks, test_tasks, key=(name, f"seed{s}"))
            for k in out[name]:
                out[name][k].append(getattr(res, k))
            bar.update()
    bar.close()
    for name in cfg.learners:
        summarise(out[name])
    return {"learners": out, "n_test": n_test, "chance": 1.0 / classes,
            "parameter_counts": parameter_counts(cfg, in_features, classes, ctx)}  # fmt: skip


def summarise(m: dict[str, Any]) -> None:
    """Per seed: the mean over tasks of the during, final, final-inferred (CL3) accuracy and
    the forgetting (during - final), added to ``m``."""
    res = [ContinualResult(accuracy=a, accuracy_inferred=b)
           for a, b in zip(m["accuracy"], m["accuracy_inferred"], strict=True)]  # fmt: skip
    m["during_mean"] = [float(np.mean(r.during)) for r in res]
    m["final_mean"] = [float(np.mean(r.final)) for r in res]
    m["final_inferred_mean"] = [float(np.nanmean(r.final_inferred)) for r in res]
    m["forgetting"] = [d - f for d, f in zip(m["during_mean"], m["final_mean"], strict=True)]


def _pct(values: Sequence[float]) -> str:
    return fmt_mean_std(100 * nanmean(values), 100 * nanstd(values)) + " %"


def judge_sequence(cfg: ContinualExperimentConfig, metrics: Mapping[str, Any], *,
                   paper_ref: str, paper_numbers: Mapping[str, tuple[float, float, str]],
                   paper_tasks: int) -> list[Claim]:  # fmt: skip
    """The paper's sentences on one benchmark: the hypernetwork's regulariser prevents the
    forgetting that fine-tuning shows; HNET ends above EWC (the weight-space regulariser);
    and where a paper number was found (``paper_numbers``: metric -> (mean, ±, source)),
    our mean within its spread."""
    by = metrics["learners"]
    claims: list[Claim] = []
    chance = float(metrics["chance"])
    n_test = int(sum(metrics["n_test"]))

    def noise(*names: str) -> tuple[float | None, float | None]:
        """Each repetition's own test-set noise (binomial SE of its mean accuracy)."""
        a, b = (binomial_se(nanmean(by[n]["final_mean"]), n_test) for n in names)
        return a, b

    if "hnet" in by and "finetune" in by:
        v = compare(by["hnet"]["final_mean"], by["finetune"]["final_mean"], lower=False,
                    names=("HNET", "fine-tuning"), chance=chance,
                    noise=noise("hnet", "finetune"))  # fmt: skip
        claims.append(Claim.of(
            "the hypernetwork's output regulariser prevents forgetting: HNET's final accuracy "
            "(mean over tasks, task given) above fine-tuning's on the same target", paper_ref, v,
            forgetting_hnet=by["hnet"]["forgetting"],
            forgetting_finetune=by["finetune"]["forgetting"]))  # fmt: skip
    if "hnet" in by and "ewc" in by:
        v = compare(by["hnet"]["final_mean"], by["ewc"]["final_mean"], lower=False,
                    names=("HNET", "EWC"), chance=chance, noise=noise("hnet", "ewc"))  # fmt: skip
        claims.append(Claim.of(
            "HNET's final accuracy (task given) above EWC's, a weight-space regulariser on the "
            "same target", paper_ref, v))  # fmt: skip
    for metric, (mean, pm, source) in paper_numbers.items():
        if "hnet" not in by:
            continue
        v = within(by["hnet"][metric], mean, pm, name=f"HNET {metric}", source=source)
        if cfg.n_tasks != paper_tasks:
            v = Verdict(None, v.rule, v.evidence, f"{cfg.n_tasks} tasks: the paper's number "
                        f"is for {paper_tasks}")  # fmt: skip
        claims.append(Claim.of(f"HNET {metric.replace('_', ' ')} matches the paper's "
                               f"{100 * mean:.2f} ± {100 * pm:.2f} %", paper_ref, v))  # fmt: skip
    if not claims:
        claims.append(
            Claim.of(
                "no learner pair to compare: nothing judged",
                paper_ref,
                Verdict(
                    None,
                    "needs 'hnet' with 'finetune' or 'ewc'",
                    {},
                    "the config trains only " + ", ".join(cfg.learners),
                ),
            )
        )
    return claims


def accuracy_figure(ctx: RunContext[Any], metrics: Mapping[str, Any], title: str) -> str:
    """Per learner: the accuracy matrix (task j after training task i, mean over seeds) and
    each task's accuracy over the sequence."""
    by = metrics["learners"]
    names = list(by)
    fig = Figure(figsize=(4.2 * len(names), 7.2))
    axes = fig.subplots(2, len(names), squeeze=False)
    for col, name in enumerate(names):
        stack = np.stack([_matrix(a) for a in by[name]["accuracy"]])
        with warnings.catch_warnings():  # the upper triangle (tasks not yet learned) is NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(stack, 0), np.nanstd(stack, 0)
        ax = axes[0][col]
        im = ax.imshow(mean, vmin=0.5, vmax=1.0, cmap="viridis")
        n = mean.shape[0]
        for i in range(n):
            for j in range(i + 1):
                ax.text(j, i, f"{100 * mean[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="w" if mean[i, j] < 0.8 else "k")  # fmt: skip
        ax.set_title(f"{LABELS[name]}: final {_pct(by[name]['final_mean'])}", fontsize=9)
        ax.set_xlabel("task j (tested)")
        ax.set_ylabel("after training task i")
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax2 = axes[1][col]
        for j in range(n):
            xs = np.arange(j, n)
            ax2.errorbar(xs, 100 * mean[j:, j], yerr=100 * std[j:, j], marker="o", ms=3,
                         capsize=2, label=f"task {j}")  # fmt: skip
        ax2.set_xlabel("after training task i")
        ax2.set_ylabel("test accuracy of task j (%)")
        ax2.set_xticks(range(n))
        ax2.legend(fontsize=6, ncol=2)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="accuracy")
    fig.suptitle(title, fontsize=10)
    return ctx.save_figure(fig, "accuracy_matrix")


def _matrix(rows: Sequence[Sequence[float]]) -> np.ndarray:
    n = len(rows)
    m = np.full((n, n), math.nan)
    for i, r in enumerate(rows):
        m[i, : len(r)] = r
    return m


def sequence_result(ctx: RunContext[ContinualExperimentConfig], metrics: dict[str, Any], *,
                    title: str, claims: list[Claim],
                    paper_rows: Mapping[str, str]) -> Result:  # fmt: skip
    """The record: figure, rows (ours beside the paper's where found) and notes."""
    by = metrics["learners"]
    rows: list[tuple[str, str, str]] = []
    for name, m in by.items():
        label = LABELS[name]
        rows.append((f"{label}: during accuracy (CL1)", paper_rows.get(f"{name}_during", "—"),
                     _pct(m["during_mean"])))  # fmt: skip
        rows.append((f"{label}: final accuracy (CL1)", paper_rows.get(f"{name}_final", "—"),
                     _pct(m["final_mean"])))  # fmt: skip
        rows.append((f"{label}: final accuracy, task inferred (CL3, entropy)",
                     paper_rows.get(f"{name}_final_inferred", "—"),
                     _pct(m["final_inferred_mean"])))  # fmt: skip
        secs = [sum(s) for s in m["seconds"]]
        rows.append((f"{label}: wall time per seed", "—", f"{nanmean(secs):.3g} s"))
    pc = metrics["parameter_counts"]
    rows.append(("target weights / hypernetwork trainables (ratio)", "—",
                 f"{pc['target']:,} / {pc['hnet'] + pc['task_embeddings']:,} "
                 f"({pc['compression_ratio']:.3f})"))  # fmt: skip
    fig = accuracy_figure(ctx, metrics, title)
    notes = ["accuracies are means over tasks per seed, then mean ± std over seeds; 'during': "
             "each task right after it was learned, 'final': after the last task",
             "— : no paper number found in a source read here (the paper's text is not in "
             "shared/papers; see the experiment's paper_reference)"]  # fmt: skip
    return Result(metrics=metrics, claims=claims, figures=[fig], comparison=rows, notes=notes)
