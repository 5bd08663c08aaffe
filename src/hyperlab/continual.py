"""Continual learning with task-conditioned hypernetworks (von Oswald et al., ICLR 2020).

A hypernetwork f_h(e_t, Θ_h) maps a learned embedding e_t of task t to all weights of a target
network g (here a multi-head classifier: task t reads its own ``classes`` outputs). Forgetting
is prevented at the meta level: while task T is learned, the output of f_h for every earlier
embedding is held near its value before task T (Eq. 2),

    L = L_task(Θ_h, e_T) + β / (T - 1) · Σ_{t<T} ‖f_h(e_t, Θ*_h) - f_h(e_t, Θ_h + ΔΘ_h)‖²,

with ΔΘ_h the step the optimizer is about to take on L_task (the paper's look-ahead). Here the
sum over earlier tasks is **one batched call** of f_h on the stacked embeddings
([`output_regularizer`][hyperlab.continual.output_regularizer]; hypnettorch loops over the tasks).
Task identity is given (CL1) or
inferred as the embedding whose head predicts with the lowest entropy (CL3, HNET+ENT:
[`infer_task`][hyperlab.continual.infer_task]).

[`Hypernet`][hyperlab.continual.Hypernet], [`FineTune`][hyperlab.continual.FineTune] (the
forgetting baseline: the same target trained
directly) and [`EWC`][hyperlab.continual.EWC] (elastic weight consolidation on it) are learners of
one loop,
[`fit_tasks`][hyperlab.continual.fit_tasks]: a fresh optimizer per task as in the released code
(chrhenning/hypercl),
a checkpoint after every task, and an exact resume between tasks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F
from tqdm.auto import tqdm

from hyperlab.hypernet import ChunkedHead, FullHead, HyperNetwork
from hyperlab.io import CheckpointError, atomic_torch_save, safe_torch_load
from hyperlab.primary import BoundPrimary, Primary

__all__ = [
    "EWC",
    "ContinualConfig",
    "ContinualResult",
    "FineTune",
    "Hypernet",
    "Learner",
    "TaskConditioned",
    "evaluate_tasks",
    "fit_tasks",
    "infer_task",
    "lookahead",
    "output_regularizer",
    "output_regularizer_loop",
]

Task = Mapping[str, Tensor]  # {"x", "y"} (labels within the task, 0..classes-1)


def _xavier_uniform(shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    return torch.rand(tuple(shape), generator=generator).mul_(2 * bound).sub_(bound)


class _Flat(nn.Module):
    """f_h as a module whose forward is the flat output (for ``functional_call``), or with a
    target, the summed squared error (the chunked head's fused `squared_error`)."""

    def __init__(self, hnet: HyperNetwork):
        super().__init__()
        self.hnet = hnet

    def forward(self, e: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return self.hnet.flat(e)
        head = self.hnet.head
        if isinstance(head, ChunkedHead):
            return head.squared_error(self.hnet.features(e), target)
        return F.mse_loss(self.hnet.flat(e), target, reduction="sum")


class TaskConditioned(nn.Module):
    """f_h(e_t, Θ_h) → the weights of ``target`` for task t, with one learned embedding per
    task. ``chunk_size`` set: the chunked hypernetwork (one generator G([e; z_c]) of
    ``hidden`` widths makes every chunk, with learned chunk embeddings z_c); None: an MLP of
    ``hidden`` widths with a full linear head. ``init='authors'``: the released code's init
    (Xavier-uniform weights, zero biases); 'hyperfan': hyperlab's (the head scaled so generated
    weights start at the target's init variance). Task and chunk embeddings start N(0, 1) in
    both, as in the released code."""

    target: Primary
    hnet: HyperNetwork

    def __init__(self, target: Primary, n_tasks: int, *, embedding_dim: int = 96,
                 hidden: Sequence[int] = (10, 10), activation: str = "relu",
                 chunk_size: int | None = 42_000, chunk_embedding_dim: int = 96,
                 init: Literal["authors", "hyperfan"] = "authors",
                 generator: torch.Generator | None = None):  # fmt: skip
        super().__init__()
        if n_tasks < 1 or embedding_dim < 1:
            raise ValueError(f"n_tasks, embedding_dim: expected positive ints, got {n_tasks}, "
                             f"{embedding_dim}")  # fmt: skip
        if init not in ("authors", "hyperfan"):
            raise ValueError(f"init: expected 'authors' or 'hyperfan', got {init!r}")
        self.target = target
        if chunk_size:
            self.hnet = HyperNetwork(target, embedding_dim, [], head="chunked",
                                     chunk_size=chunk_size, chunk_embedding_dim=chunk_embedding_dim,
                                     chunk_hidden=list(hidden), activation=activation,
                                     generator=generator)  # fmt: skip
        else:
            self.hnet = HyperNetwork(target, embedding_dim, list(hidden), activation=activation,
                                     generator=generator)  # fmt: skip
        self.embeddings = nn.ParameterList(
            [nn.Parameter(torch.randn(embedding_dim, generator=generator)) for _ in range(n_tasks)]
        )
        if init == "authors":
            self._xavier(generator)

    @torch.no_grad()
    def _xavier(self, generator: torch.Generator | None) -> None:
        head = self.hnet.head
        for name, p in self.hnet.named_parameters():
            if name.startswith("head."):
                continue  # set below, each head as its own whole matrices
            if p.dim() >= 2:
                p.copy_(_xavier_uniform(p.shape, generator))
            else:
                p.zero_()
        if isinstance(head, ChunkedHead):
            head.xavier_(generator)
        elif isinstance(head, FullHead):
            w = _xavier_uniform((head.out_features, head.in_features), generator)
            head.set_weight(w, torch.zeros(head.out_features))

    def embedding(self, tasks: Sequence[int]) -> Tensor:
        """The embeddings of ``tasks`` stacked: (T, d)."""
        return torch.stack([self.embeddings[t] for t in tasks])

    def weights(self, tasks: Sequence[int]) -> dict[str, Tensor]:
        """θ for every task of ``tasks`` in one batched call: leading dim T."""
        return self.hnet(self.embedding(tasks))

    def forward(self, x: Tensor, task: int) -> Tensor:
        """g(x; f_h(e_task)): the target's full output for one task's weights."""
        theta = self.hnet(self.embeddings[task])
        return self.target(x, theta, **self.condition([task]))

    def condition(self, tasks: Sequence[int]) -> dict[str, Tensor]:
        """The tasks as condition ids for a target that keeps per-task state (a
        [`ModulePrimary`][hyperlab.modules.ModulePrimary] with ``bn_stats='per_condition'``:
        per-task
        BatchNorm statistics), else nothing."""
        if getattr(self.target, "bn_stats", None) != "per_condition":
            return {}
        return {"condition_ids": torch.as_tensor(list(tasks), dtype=torch.long)}


def output_regularizer(model: TaskConditioned, targets: Tensor, tasks: Sequence[int],
                       delta: Mapping[str, Tensor] | None = None) -> Tensor:  # fmt: skip
    """Eq. 2's sum, without β: mean over ``tasks`` of ‖targets_t - f_h(e_t, Θ_h + ΔΘ_h)‖²,
    all tasks in one batched call of f_h. ``targets`` (T, N_g) are f_h's outputs before the
    current task; the earlier embeddings are held fixed; ``delta`` (name -> ΔΘ) is the
    look-ahead step ([`lookahead`][hyperlab.continual.lookahead])."""
    e = model.embedding(tasks).detach()
    params = {f"hnet.{k}": p + delta[k] if delta is not None and k in delta else p
              for k, p in model.hnet.named_parameters()}  # fmt: skip
    return functional_call(_Flat(model.hnet), params, (e, targets)) / len(tasks)


def output_regularizer_loop(model: TaskConditioned, targets: Tensor, tasks: Sequence[int],
                            delta: Mapping[str, Tensor] | None = None) -> Tensor:  # fmt: skip
    """The same sum one task at a time (hypnettorch's way): the reference the batched call is
    tested and benchmarked against."""
    params = {f"hnet.{k}": p + delta[k] if delta is not None and k in delta else p
              for k, p in model.hnet.named_parameters()}  # fmt: skip
    total = targets.new_zeros(())
    for i, t in enumerate(tasks):
        out = functional_call(_Flat(model.hnet), params, (model.embeddings[t].detach(),))
        total = total + (out - targets[i]).pow(2).sum()
    return total / len(tasks)


@torch.no_grad()
def lookahead(optimizer: torch.optim.Optimizer) -> dict[Tensor, Tensor]:
    """The change ``optimizer.step()`` would make to each parameter now (from its gradient and
    state), without making it: the paper's ΔΘ. Adam and SGD (with momentum)."""
    out: dict[Tensor, Tensor] = {}
    for group in optimizer.param_groups:
        lr = group["lr"]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            st = optimizer.state.get(p, {})
            if isinstance(optimizer, torch.optim.Adam):
                b1, b2 = group["betas"]
                step = float(st["step"]) + 1 if "step" in st else 1.0
                m = st["exp_avg"] * b1 + (1 - b1) * g if "exp_avg" in st else (1 - b1) * g
                v = (st["exp_avg_sq"] * b2 + (1 - b2) * g * g if "exp_avg_sq" in st
                     else (1 - b2) * g * g)  # fmt: skip
                m_hat, v_hat = m / (1 - b1**step), v / (1 - b2**step)
                out[p] = -lr * m_hat / (v_hat.sqrt() + group["eps"])
            elif isinstance(optimizer, torch.optim.SGD):
                mom = group["momentum"]
                buf = st.get("momentum_buffer")
                d = g if not mom else (g.clone() if buf is None else buf * mom + g)
                out[p] = -lr * d
            else:
                raise TypeError(f"optimizer: lookahead knows Adam and SGD, got {type(optimizer)}")
    return out


@dataclass(frozen=True)
class ContinualConfig:
    """The training of one task sequence (defaults: the released code's SplitMNIST settings,
    chrhenning/hypercl mnist/train_args_default.py). ``heads='multi'``: task t reads its own
    ``classes`` outputs of the target (CL1, and CL3 through the inferred task); 'single': every
    task shares the target's ``classes`` outputs (CL2)."""

    iterations: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    embedding_lr: float = 1e-3
    beta: float = 0.01
    lookahead: bool = True
    ewc_lambda: float = 1e4
    fisher_samples: int = 1000
    heads: Literal["multi", "single"] = "multi"
    eval_batch: int = 2000
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "fisher_samples", "eval_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        for name in ("lr", "embedding_lr"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name}: expected a positive float, got {getattr(self, name)}")
        if self.beta < 0 or self.ewc_lambda < 0:
            raise ValueError(f"beta, ewc_lambda: expected >= 0, got {self.beta}, {self.ewc_lambda}")
        if self.heads not in ("multi", "single"):
            raise ValueError(f"heads: expected 'multi' or 'single', got {self.heads!r}")


class Learner:
    """What [`fit_tasks`][hyperlab.continual.fit_tasks] trains: a model, its per-task optimizers
    and losses, and each
    task's head on an input. Subclasses: [`Hypernet`][hyperlab.continual.Hypernet],
    [`FineTune`][hyperlab.continual.FineTune], [`EWC`][hyperlab.continual.EWC]."""

    model: nn.Module
    classes: int
    cfg: ContinualConfig

    @property
    def outputs(self) -> int:
        """The target's number of outputs."""
        raise NotImplementedError

    def head(self, logits: Tensor, task: int) -> Tensor:
        """Task ``task``'s ``classes`` logits of the target's output."""
        if self.cfg.heads == "single":
            return logits
        return logits[..., task * self.classes : (task + 1) * self.classes]

    def start_task(self, t: int, data: Task) -> None:
        raise NotImplementedError

    def step(self, t: int, batch: Task) -> Tensor:
        """One optimisation step on ``batch`` of task t; returns the task loss (detached)."""
        raise NotImplementedError

    def end_task(self, t: int, data: Task) -> None:
        pass

    def head_logits(self, x: Tensor, tasks: Sequence[int]) -> Tensor:
        """Each task's head on ``x`` with that task's model: (T, N, classes)."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass


class Hypernet(Learner):
    """HNET: the task-conditioned hypernetwork with the output regulariser (Eq. 2)."""

    model: TaskConditioned

    def __init__(self, model: TaskConditioned, classes: int, cfg: ContinualConfig):
        self.model, self.classes, self.cfg = model, classes, cfg
        self.targets: Tensor | None = None

    @property
    def outputs(self) -> int:
        return self.model.target.out_shape[-1]

    def start_task(self, t: int, data: Task) -> None:
        # fresh optimizers for Θ_h (chunk embeddings included) and for e_t, as in the released
        # code; the targets f_h(e_j, Θ*_h) of the earlier tasks, once per task
        cfg = self.cfg
        self.opt = torch.optim.Adam(self.model.hnet.parameters(), lr=cfg.lr)
        self.opt_emb = torch.optim.Adam([self.model.embeddings[t]], lr=cfg.embedding_lr)
        with torch.no_grad():
            self.targets = self.model.hnet.flat(self.model.embedding(range(t))) if t else None

    def step(self, t: int, batch: Task) -> Tensor:
        cfg = self.cfg
        self.opt.zero_grad(set_to_none=True)
        self.opt_emb.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.head(self.model(batch["x"], t), t), batch["y"])
        loss.backward()
        if t and cfg.beta > 0:
            assert self.targets is not None
            delta = None
            if cfg.lookahead:
                by_param = lookahead(self.opt)
                delta = {k: by_param[p] for k, p in self.model.hnet.named_parameters()
                         if p in by_param}  # fmt: skip
            reg = output_regularizer(self.model, self.targets, range(t), delta)
            (cfg.beta * reg).backward()
        self.opt.step()
        self.opt_emb.step()
        return loss.detach()

    def head_logits(self, x: Tensor, tasks: Sequence[int]) -> Tensor:
        theta = self.model.weights(tasks)  # every task's weights in one call
        out = self.model.target(x.expand(len(tasks), *x.shape), theta,
                                **self.model.condition(tasks))  # (T, N, outputs)  # fmt: skip
        return torch.stack([self.head(out[i], t) for i, t in enumerate(tasks)])


class FineTune(Learner):
    """The target network trained directly on each task in turn, no regulariser: the
    forgetting baseline."""

    model: BoundPrimary

    def __init__(self, model: BoundPrimary, classes: int, cfg: ContinualConfig):
        self.model, self.classes, self.cfg = model, classes, cfg

    @property
    def outputs(self) -> int:
        return self.model.primary.out_shape[-1]

    def start_task(self, t: int, data: Task) -> None:
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)

    def penalty(self) -> Tensor | None:
        return None

    def step(self, t: int, batch: Task) -> Tensor:
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.head(self.model(batch["x"]), t), batch["y"])
        pen = self.penalty()
        (loss if pen is None else loss + pen).backward()
        self.opt.step()
        return loss.detach()

    def head_logits(self, x: Tensor, tasks: Sequence[int]) -> Tensor:
        out = self.model(x)
        return torch.stack([self.head(out, t) for t in tasks])


class EWC(FineTune):
    """Elastic weight consolidation (Kirkpatrick et al. 2017) on the target network: after
    each task its diagonal empirical Fisher F (per-sample gradients of the log-likelihood of
    the true label, ``fisher_samples`` training samples) and weights w* are kept; the loss adds
    λ/2 Σ_tasks Σ_i F_i (w_i - w*_i)²."""

    def __init__(self, model: BoundPrimary, classes: int, cfg: ContinualConfig):
        super().__init__(model, classes, cfg)
        self.anchors: list[dict[str, Tensor]] = []
        self.fishers: list[dict[str, Tensor]] = []

    def penalty(self) -> Tensor | None:
        if not self.anchors or self.cfg.ewc_lambda == 0:
            return None
        terms = [(fisher[k] * (p - anchor[k]).pow(2)).sum()
                 for anchor, fisher in zip(self.anchors, self.fishers, strict=True)
                 for k, p in self.model.named_parameters()]  # fmt: skip
        return 0.5 * self.cfg.ewc_lambda * torch.stack(terms).sum()

    def fisher(self, t: int, x: Tensor, y: Tensor, chunk: int = 256) -> dict[str, Tensor]:
        """The diagonal empirical Fisher of task t on (x, y): per-sample gradients by
        ``vmap(grad)``, ``chunk`` samples at a time."""
        params = {k: p.detach() for k, p in self.model.named_parameters()}
        primary = self.model.primary

        def loglik(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
            logits = self.head(primary(xi.unsqueeze(0), p), t)
            return F.log_softmax(logits, -1)[0].gather(0, yi.unsqueeze(0)).squeeze(0)

        per_sample = torch.func.vmap(torch.func.grad(loglik), in_dims=(None, 0, 0))
        out = {k: torch.zeros_like(p) for k, p in params.items()}
        for i in range(0, len(y), chunk):
            grads = per_sample(params, x[i : i + chunk], y[i : i + chunk])
            for k, g in grads.items():
                out[k] += g.pow(2).sum(0)
        return {k: v / len(y) for k, v in out.items()}

    def end_task(self, t: int, data: Task) -> None:
        n = min(self.cfg.fisher_samples, len(data["y"]))
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000 + t)
        idx = torch.randperm(len(data["y"]), generator=g)[:n].to(data["y"].device)
        self.fishers.append(self.fisher(t, data["x"][idx], data["y"][idx]))
        self.anchors.append({k: p.detach().clone() for k, p in self.model.named_parameters()})

    def extra_state(self) -> dict[str, Any]:
        return {"anchors": self.anchors, "fishers": self.fishers}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.anchors = list(state.get("anchors", []))
        self.fishers = list(state.get("fishers", []))


@torch.no_grad()
def infer_task(learner: Learner, x: Tensor, tasks: Sequence[int]) -> Tensor:
    """CL3 (HNET+ENT): per sample, the task among ``tasks`` whose head predicts with the
    lowest entropy (each task with its own generated weights); returns indices into
    ``tasks``."""
    return _entropy(learner.head_logits(x, tasks)).argmin(0)


def _entropy(logits: Tensor) -> Tensor:
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


@dataclass
class ContinualResult:
    """``accuracy[i][j]``: accuracy on task j's test set after training tasks 0..i, the task
    given (CL1; j ≤ i). ``accuracy_inferred[i][j]``: the same with the task inferred among
    0..i by entropy (CL3: right only when both the task and the class are);
    ``task_inference[i][j]``: how often task j's samples were assigned to task j.
    ``train_loss[i]``: task i's mean training loss; ``seconds[i]``: its wall time."""

    accuracy: list[list[float]] = field(default_factory=list)
    accuracy_inferred: list[list[float]] = field(default_factory=list)
    task_inference: list[list[float]] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def during(self) -> list[float]:
        """Each task's accuracy right after it was learned (the paper's "during")."""
        return [row[i] for i, row in enumerate(self.accuracy)]

    @property
    def final(self) -> list[float]:
        """Each task's accuracy after the last task (the paper's "final")."""
        return list(self.accuracy[-1]) if self.accuracy else []

    @property
    def final_inferred(self) -> list[float]:
        return list(self.accuracy_inferred[-1]) if self.accuracy_inferred else []


@torch.no_grad()
def evaluate_tasks(learner: Learner, test: Sequence[Task], upto: int, *,
                   infer: bool = True) -> tuple[list[float], list[float], list[float]]:  # fmt: skip
    """CL1 accuracy, CL3 accuracy and task-inference rate of tasks 0..``upto`` (one row of
    [`ContinualResult`][hyperlab.continual.ContinualResult]); every task's weights are generated
    once per test chunk."""
    tasks = list(range(upto + 1))
    was = learner.model.training
    learner.model.eval()  # BatchNorm: the running (per-task) statistics
    try:
        return _evaluate(learner, test, tasks, infer)
    finally:
        learner.model.train(was)


def _evaluate(learner: Learner, test: Sequence[Task], tasks: list[int], infer: bool
              ) -> tuple[list[float], list[float], list[float]]:  # fmt: skip
    acc, acc_inf, ti = [], [], []
    for j in tasks:
        x, y = test[j]["x"], test[j]["y"]
        right = right_inf = right_task = 0
        for i in range(0, len(y), learner.cfg.eval_batch):
            xb, yb = x[i : i + learner.cfg.eval_batch], y[i : i + learner.cfg.eval_batch]
            logits = learner.head_logits(xb, tasks if infer else [j])  # (T, n, classes)
            own = logits[j if infer else 0]
            right += int((own.argmax(-1) == yb).sum())
            if infer:
                picked = _entropy(logits).argmin(0)
                pred = logits[picked, torch.arange(len(yb), device=yb.device)].argmax(-1)
                right_task += int((picked == j).sum())
                right_inf += int(((picked == j) & (pred == yb)).sum())
        acc.append(right / len(y))
        acc_inf.append(right_inf / len(y) if infer else math.nan)
        ti.append(right_task / len(y) if infer else math.nan)
    return acc, acc_inf, ti


def _batches(n: int, iterations: int, batch_size: int, generator: torch.Generator):
    """Index batches of shuffled epochs over n samples (the released data handlers' order:
    a new permutation whenever one runs out)."""
    order = torch.empty(0, dtype=torch.long)
    for _ in range(iterations):
        while len(order) < batch_size:
            order = torch.cat([order, torch.randperm(n, generator=generator)])
        yield order[:batch_size]
        order = order[batch_size:]


def _check_task(task: Task, argument: str, classes: int) -> Task:
    if not isinstance(task, Mapping) or "x" not in task or "y" not in task:
        raise TypeError(f"{argument}: expected a mapping with 'x' and 'y' tensors")
    x, y = task["x"], task["y"]
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"{argument}: 'x' and 'y' must hold the same positive number of "
                         f"samples, got {len(x)} and {len(y)}")  # fmt: skip
    if y.dtype != torch.long or int(y.min()) < 0 or int(y.max()) >= classes:
        raise ValueError(f"{argument}['y']: expected int64 labels within the task, "
                         f"0..{classes - 1}")  # fmt: skip
    return task


def _to(task: Task, device: torch.device | None) -> Task:
    return task if device is None else {k: v.to(device) for k, v in task.items()}


def _check_outputs(learner: Learner, n_tasks: int) -> None:
    want = learner.classes * (n_tasks if learner.cfg.heads == "multi" else 1)
    if learner.outputs != want:
        raise ValueError(
            f"target: expected {want} outputs ({learner.classes} classes"
            + (f" x {n_tasks} tasks, heads='multi'" if learner.cfg.heads == "multi" else "")
            + f"), got {learner.outputs}"
        )


def _fingerprint(learner: Learner, n_tasks: int) -> dict[str, Any]:
    cfg = {k: v for k, v in vars(learner.cfg).items() if k not in ("progress", "eval_batch")}
    shapes = {k: list(v.shape) for k, v in learner.model.state_dict().items()}
    return {"learner": type(learner).__name__, "tasks": n_tasks, "config": cfg, "shapes": shapes}


def fit_tasks(learner: Learner, train: Sequence[Task], test: Sequence[Task], *,
              checkpoint: str | Path | None = None, infer: bool = True,
              on_task: Callable[[int, ContinualResult], None] | None = None,
              device: str | torch.device | None = None) -> ContinualResult:  # fmt: skip
    """Train ``learner`` on ``train[0], train[1], ...`` in turn (``cfg.iterations`` steps of
    ``cfg.batch_size`` per task, a fresh optimizer per task), evaluating every task learned so
    far on ``test`` after each ([`evaluate_tasks`][hyperlab.continual.evaluate_tasks]). With
    ``checkpoint`` (a file path),
    the state is written atomically after every task and a later call resumes after the last
    finished task, exactly (each task's batches come from a generator seeded by (seed, task));
    a checkpoint of another learner, config or task count is refused. ``device``: where the
    model and each task's tensors go (default: where they are). ``train`` may be a lazy
    sequence ([`hyperlab.data.tasks.PermutedTasks`][hyperlab.data.tasks.PermutedTasks]): each task
    is read when reached."""
    if not len(train):
        raise ValueError("train: expected a non-empty sequence of tasks")
    if len(test) != len(train):
        raise ValueError(f"test: expected one test set per task ({len(train)}), got {len(test)}")
    _check_outputs(learner, len(train))
    dev = torch.device(device) if device is not None else None
    test = [_to(_check_task(t, f"test[{i}]", learner.classes), dev) for i, t in enumerate(test)]
    if dev is not None:
        learner.model.to(dev)
    cfg, model = learner.cfg, learner.model
    path = Path(checkpoint) if checkpoint is not None else None
    result, start = ContinualResult(), 0
    fp = _fingerprint(learner, len(train))
    if path is not None and path.exists():
        state = safe_torch_load(path)
        if state.get("fingerprint") != fp:
            raise CheckpointError(f"{path}: written for another learner, config or task count "
                                  "(delete it or choose another checkpoint path)")  # fmt: skip
        model.load_state_dict(state["model"])  # onto the model's device
        learner.load_extra_state(state["extra"])
        result = ContinualResult(**state["result"])
        start = len(result.accuracy)
    total = (len(train) - start) * cfg.iterations
    bar = tqdm(total=total, disable=not cfg.progress, desc=type(learner).__name__)
    for t in range(start, len(train)):
        t0 = time.perf_counter()
        data = _to(_check_task(train[t], f"train[{t}]", learner.classes), dev)  # when reached:
        # a lazy sequence (PermutedTasks) builds one task at a time
        learner.start_task(t, data)
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + t)
        loss_sum = torch.zeros((), device=data["y"].device)
        for idx in _batches(len(data["y"]), cfg.iterations, cfg.batch_size, g):
            idx = idx.to(data["y"].device)
            loss_sum += learner.step(t, {"x": data["x"][idx], "y": data["y"][idx]})
            bar.update()
        learner.end_task(t, data)
        acc, acc_inf, ti = evaluate_tasks(learner, test, t, infer=infer)
        result.accuracy.append(acc)
        result.accuracy_inferred.append(acc_inf)
        result.task_inference.append(ti)
        result.train_loss.append(float(loss_sum) / cfg.iterations)
        result.seconds.append(time.perf_counter() - t0)
        bar.set_postfix(task=t, acc=f"{sum(acc) / len(acc):.3f}")
        if path is not None:
            atomic_torch_save({"fingerprint": fp, "model": model.state_dict(),
                               "extra": learner.extra_state(), "result": asdict(result)},
                              path)  # fmt: skip
        if on_task is not None:
            on_task(t, result)
    bar.close()
    return result
