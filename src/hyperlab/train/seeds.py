"""Repetitions trained side by side: [`fit_seeds`][hyperlab.train.seeds.fit_seeds] trains S copies
of one architecture (its
seeds) as one batched model, with ``torch.func.stack_module_state`` + ``vmap``.

Each seed keeps what [`fit`][hyperlab.train.loop.fit] would give it alone: its initialisation, its
data, its epoch permutations and its transform's random stream; the optimizer (SGD or Adam,
elementwise) updates each seed's slice exactly as it would update that seed. So per-seed
results equal one-after-another runs to float tolerance (the batched products round
differently), and every seed writes the same ``last.pt`` and ``history.csv`` that ``fit``
writes: a run with more seeds, or a sequential run, resumes them.

Not batched (a clear error names them): ``grad_clip`` (a global norm would mix the seeds),
``accumulate > 1``, fp16's loss scaling, and distributed runs; models that draw from the global
torch RNG inside the forward (dropout) raise under ``vmap``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from hyperlab.io import ensure_writable_dir
from hyperlab.runtime import input_checks
from hyperlab.train.config import (
    EvaluateFn,
    History,
    LossFn,
    TrainConfig,
    TrainingDiverged,
    TransformFn,
    autocast,
)
from hyperlab.train.loop import _check_data, _EpochLog, _evaluate
from hyperlab.train.state import (
    CHECKPOINT_NAME,
    TrainState,
    _derive_seed,
    _resume,
    _Run,
    _save_checkpoint,
)

__all__ = ["fit_seeds"]


class _Slice(nn.Module):
    """One seed's view of the stacked parameters inside ``vmap``: the base module run with
    them by ``functional_call`` (what ``loss_fn`` receives as its model)."""

    def __init__(self, base: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor]):
        super().__init__()
        self._base = [base]  # a list: not a registered submodule
        self._state = {**params, **buffers}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self._base[0], self._state, args, kwargs)


def _check(models: Sequence[nn.Module], configs: Sequence[TrainConfig]) -> None:
    if not models or len(models) != len(configs):
        raise ValueError(f"models, configs: expected one config per model, got {len(models)} "
                         f"models and {len(configs)} configs")  # fmt: skip
    shapes = [[(n, tuple(p.shape)) for n, p in m.named_parameters()] for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("models: the seeds must share one architecture (same parameter names "
                         "and shapes)")  # fmt: skip
    free = {"seed", "desc", "progress"}
    first = {k: v for k, v in configs[0].to_dict().items() if k not in free}
    for c in configs:
        c.validate()
        other = {k: v for k, v in c.to_dict().items() if k not in free}
        if other != first:
            diff = sorted(k for k in first if first[k] != other[k])
            raise ValueError(f"configs: the seeds may differ only in seed, got {diff} too")
    c = configs[0]
    for name, bad in (("grad_clip", c.grad_clip is not None), ("accumulate", c.accumulate != 1),
                      ("precision", c.precision == "fp16")):  # fmt: skip
        if bad:
            raise ValueError(f"TrainConfig.{name}: not batched across seeds (it would couple "
                             "them); train these seeds with fit() one by one")  # fmt: skip
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise ValueError("fit_seeds: not under torch.distributed; use fit() per seed")


def _stack_optimizer(opt: torch.optim.Optimizer, states: Sequence[TrainState]) -> None:
    """The stacked optimizer's state from the seeds' (resumed) optimizers."""
    stacked = opt.param_groups[0]["params"]
    per_seed = [s.optimizer.param_groups[0]["params"] for s in states]
    for i, p in enumerate(stacked):
        parts = [s.optimizer.state.get(ps[i], {}) for s, ps in zip(states, per_seed, strict=True)]
        if not parts[0]:
            continue
        opt.state[p] = {k: torch.stack([d[k] for d in parts])
                        if torch.is_tensor(v) and v.dim() > 0 else copy.deepcopy(v)
                        for k, v in parts[0].items()}  # fmt: skip


def _unstack(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
             states: Sequence[TrainState], params: Sequence[Tensor],
             names: list[str]) -> None:  # fmt: skip
    """Each seed's model, optimizer state, learning rate and schedule from the stacked ones
    (for its evaluation and its checkpoint)."""
    for s, st in enumerate(states):
        own = dict(st.model.named_parameters())
        with torch.no_grad():
            for name, p in zip(names, params, strict=True):
                own[name].copy_(p[s])
        for i, p in enumerate(st.optimizer.param_groups[0]["params"]):
            full = opt.state.get(params[i], {})
            st.optimizer.state[p] = {k: v[s].clone() if torch.is_tensor(v) and v.dim() > 0
                                     else copy.deepcopy(v) for k, v in full.items()}  # fmt: skip
        for group in st.optimizer.param_groups:
            group["lr"] = opt.param_groups[0]["lr"]
        st.scheduler.load_state_dict(copy.deepcopy(sched.state_dict()))


def fit_seeds(
    models: Sequence[nn.Module],
    loss_fn: LossFn,
    datas: Sequence[Mapping[str, Tensor]],
    configs: Sequence[TrainConfig],
    *,
    evaluate: EvaluateFn | Sequence[EvaluateFn | None] | None = None,
    transform: TransformFn | None = None,
    checkpoint_dirs: Sequence[str | Path] | None = None,
    device: str | torch.device = "cpu",
) -> list[History | TrainingDiverged]:
    """Train ``models[s]`` on ``datas[s]`` with ``configs[s]`` (the same but for the seed),
    side by side; return each seed's History, or the
    [`TrainingDiverged`][hyperlab.train.config.TrainingDiverged] that stopped it
    (the other seeds go on). ``evaluate(model)`` (one for all, or one per seed) runs per seed
    after every epoch; with ``checkpoint_dirs`` each seed checkpoints and resumes as
    [`fit`][hyperlab.train.loop.fit] does (a finished seed is not trained again; seeds at different
    epochs train in groups)."""
    _check(models, configs)
    evals = list(evaluate) if isinstance(evaluate, Sequence) else [evaluate] * len(models)
    if len(evals) != len(models):
        raise ValueError(f"evaluate: expected one per model ({len(models)}), got {len(evals)}")
    for d in datas:
        _check_data(d)
    if len({_check_data(d) for d in datas}) != 1 or len({tuple(d) for d in datas}) != 1:
        raise ValueError("datas: every seed's data must have the same keys and length")
    dev = torch.device(device)
    n, keys = _check_data(datas[0]), list(datas[0])
    dirs = list(checkpoint_dirs) if checkpoint_dirs is not None else [None] * len(models)
    runs = [_Run(dev, 0, 1, n, keys, None if d is None else
                 ensure_writable_dir(Path(d).expanduser(), argument="checkpoint_dir")
                 / CHECKPOINT_NAME) for d in dirs]  # fmt: skip
    states = []
    for m, cfg, run in zip(models, configs, runs, strict=True):
        m.to(dev)
        st = TrainState.new(m, cfg, run)
        if run.ckpt_path is not None:
            _resume(st, cfg, run)
        states.append(st)
    out: list[History | TrainingDiverged | None] = [None] * len(models)
    groups: dict[int, list[int]] = {}
    for s, st in enumerate(states):
        if st.epoch >= configs[s].epochs:
            out[s] = st.history  # finished before: nothing to train
        else:
            groups.setdefault(st.epoch, []).append(s)
    for idx in groups.values():
        res = _train_group([states[i] for i in idx], loss_fn, [datas[i] for i in idx],
                           [configs[i] for i in idx], [runs[i] for i in idx],
                           [evals[i] for i in idx], transform, dev)  # fmt: skip
        for i, r in zip(idx, res, strict=True):
            out[i] = r
    return [r for r in out if r is not None]


def _train_group(states: list[TrainState], loss_fn: LossFn, datas: list[Mapping[str, Tensor]],
                 configs: list[TrainConfig], runs: list[_Run],
                 evals: list[EvaluateFn | None], transform: TransformFn | None,
                 dev: torch.device) -> list[History | TrainingDiverged]:  # fmt: skip
    """Seeds resumed at the same epoch, trained as one stacked model to the end."""
    cfg = configs[0]
    models = [st.model for st in states]
    names = [k for k, p in models[0].named_parameters() if p.requires_grad]
    params_all, buffers = stack_module_state(list(models))
    params = [nn.Parameter(params_all[k].detach().clone()) for k in names]
    frozen = {k: v.detach() for k, v in params_all.items() if k not in names}
    base = copy.deepcopy(models[0]).to("meta")
    holder = nn.ParameterList(params)
    opt = _optimizer(holder, cfg)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
    sched.load_state_dict(states[0].scheduler.state_dict())
    opt.param_groups[0]["lr"] = states[0].optimizer.param_groups[0]["lr"]  # a resumed schedule
    _stack_optimizer(opt, states)

    def one(p: dict[str, Tensor], b: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        return loss_fn(_Slice(base, p, b), batch)

    batched = vmap(one)
    dead: dict[int, TrainingDiverged] = {}
    logs = [_EpochLog(r.ckpt_path.parent if r.ckpt_path is not None else None) for r in runs]
    steps = math.ceil(runs[0].n / cfg.batch_size)
    try:
        for epoch in range(states[0].epoch + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            perms = [torch.randperm(runs[0].n, generator=torch.Generator().manual_seed(
                _derive_seed("perm", c.seed, epoch))) for c in configs]  # fmt: skip
            totals = [0.0] * len(states)
            for step in range(1, steps + 1):
                lo, hi = (step - 1) * cfg.batch_size, step * cfg.batch_size
                batches = []
                for st, d, perm in zip(states, datas, perms, strict=True):
                    b = {k: t[perm.to(t.device)[lo:hi]].to(dev) for k, t in d.items()}
                    batches.append(transform(b, st.transform_gen) if transform else b)
                stacked = {k: torch.stack([b[k] for b in batches]) for k in batches[0]}
                p = {**dict(zip(names, params, strict=True)), **frozen}
                checks = input_checks(epoch == states[0].epoch + 1 and step == 1)
                with checks, autocast(cfg.precision, dev):
                    losses = batched(p, buffers, stacked)
                values = losses.detach().double().cpu().tolist()
                size = min(hi, runs[0].n) - lo
                for s, v in enumerate(values):
                    if s not in dead and not math.isfinite(v):
                        dead[s] = TrainingDiverged(epoch, step, v)
                    elif s not in dead:
                        totals[s] += v * size
                alive = torch.tensor([s not in dead for s in range(len(states))], device=dev)
                torch.where(alive, losses, torch.zeros_like(losses)).sum().backward()
                if dead:
                    with torch.no_grad():
                        for q in params:
                            if q.grad is not None:
                                q.grad[~alive] = 0.0
                opt.step()
                opt.zero_grad(set_to_none=True)
                sched.step()
            _unstack(opt, sched, states, params, names)
            _end_epoch(states, configs, runs, logs, evals, dead, totals, epoch, t0)
    finally:
        for log in logs:
            log.close()
    return [dead.get(s, st.history) for s, st in enumerate(states)]


def _end_epoch(states: list[TrainState], configs: list[TrainConfig], runs: list[_Run],
               logs: list[_EpochLog], evals: list[EvaluateFn | None], dead: Mapping[int, Any],
               totals: list[float], epoch: int, t0: float) -> None:  # fmt: skip
    """Per seed, as fit() ends an epoch: its record, its evaluation, its log and checkpoint."""
    seconds = (time.perf_counter() - t0) / len(states)
    for s, (st, cfg, run, log) in enumerate(zip(states, configs, runs, logs, strict=True)):
        if s in dead:
            continue
        record: dict[str, float] = {"epoch": epoch, "train_loss": totals[s] / run.n}
        metrics = _evaluate(st.model, st.model, evals[s])
        record["seconds"] = seconds
        record.update(metrics)
        st.history.records.append(record)
        st.epoch = epoch
        if run.ckpt_path is not None:
            log.write(st.history)
            if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
                _save_checkpoint(st, cfg, run)


def _optimizer(holder: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(holder.parameters())
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)  # fmt: skip
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
