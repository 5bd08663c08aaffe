"""The one training loop used by every hyperlab model and experiment.

[`fit`][hyperlab.train.loop.fit] trains any ``nn.Module`` on a dict of equal-length in-memory
tensors with
minibatch SGD or Adam, records a per-epoch [`History`][hyperlab.train.config.History], and
(optionally) writes an
atomic checkpoint from which an interrupted run resumes *bit-identically*. It composes with
mixed precision (``precision="bf16"`` / ``"fp16"``: autocast with float32 master weights, a
``GradScaler`` for fp16), gradient clipping and gradient accumulation.

Randomness. Everything that is not model initialisation is derived from ``config.seed``:

* the epoch permutation comes from a fresh ``torch.Generator`` seeded from ``(seed, epoch)``;
* ``transform(batch, generator)`` receives a long-lived ``torch.Generator`` (CPU) seeded from
  ``(seed, rank)`` whose state is checkpointed;
* the global torch RNG (dropout, ``torch.rand`` inside ``loss_fn``/``evaluate``) is reseeded from
  ``(seed, rank)`` when a run starts fresh, and its state (plus the CUDA one when training on a
  GPU) is checkpointed and restored on resume. NumPy's and Python's RNGs are not touched or
  saved: draw randomness through torch to keep resume exact.

Host synchronisation. The NaN/inf input checks run on the first batch only
([`hyperlab.runtime.input_checks`][hyperlab.runtime.input_checks]), and the loss is read back to
the host every
``config.sync_every`` steps (every step on the CPU, where reading it costs nothing; every 50 on
a GPU), so a GPU step queues its work without waiting for it.

Distributed. When ``torch.distributed`` is initialised with ``world_size > 1`` (e.g. under
``torchrun``, gloo on CPU or nccl on GPU with ``device=f"cuda:{local_rank}"``), the model is
wrapped in ``DistributedDataParallel``; each rank trains on a disjoint, equal-sized slice of
every epoch's permutation (the ``n % world_size`` leftover samples of that permutation are
skipped), so ``batch_size`` is per rank. Per-step losses are all-reduced (so a NaN on any
rank stops every rank, and the recorded ``train_loss`` is the global mean), and only rank 0
writes checkpoints, which hold every rank's RNG states. Under DDP ``loss_fn`` receives the
DDP wrapper: run the forward pass through ``model(...)`` (reach submodules via
``model.module``), otherwise gradients are not synchronised. All ranks must see the same
``checkpoint_dir`` (shared filesystem).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyperlab.io import OutputDirError, atomic_write_text, ensure_writable_dir
from hyperlab.runtime import input_checks
from hyperlab.train.config import (
    GPU_SYNC_EVERY,
    EvaluateFn,
    History,
    LossFn,
    TrainConfig,
    TrainingDiverged,
    TransformFn,
    _check_metrics,
    _is_int,
    autocast,
)
from hyperlab.train.state import (
    CHECKPOINT_NAME,
    TrainState,
    _derive_seed,
    _resume,
    _Run,
    _save_checkpoint,
)


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    data: Mapping[str, Tensor],
    config: TrainConfig,
    *,
    evaluate: EvaluateFn | None = None,
    transform: TransformFn | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    device: str | torch.device = "cpu",
    stop_after_epochs: int | None = None,
) -> History:
    """Train ``model`` in place by minimising ``loss_fn(model, batch)``; return its History.

    Each epoch visits every sample once in a seeded random order, in minibatches
    ``{key: data[key][idx]}`` moved to ``device`` (the model is moved there too; pre-move
    ``data`` to the GPU if it fits, then indexing happens on the GPU), passed through
    ``transform(batch, generator)`` if given. ``evaluate(model)`` runs after each epoch in
    eval mode under ``torch.no_grad()`` (use ``torch.enable_grad()`` inside if needed) and
    its floats join the epoch record.

    With ``checkpoint_dir``, ``<dir>/last.pt`` is written atomically every
    ``config.checkpoint_every`` epochs and at the end; with ``resume=True`` an existing one is
    loaded and training continues from the next epoch, bit-identically to an uninterrupted
    run (a larger ``config.epochs`` extends a finished run; a finished one returns at once).
    ``stop_after_epochs=k`` stops (with a checkpoint) once epoch ``k`` is done, as if the run
    had been interrupted there: a later call with the same arguments finishes it.

    Raises ``ValueError``/``TypeError`` for bad inputs,
    [`TrainingDiverged`][hyperlab.train.config.TrainingDiverged] on a
    non-finite loss, [`CheckpointMismatchError`][hyperlab.train.config.CheckpointMismatchError] if
    the
    checkpoint's config (other than
    epochs/progress/desc/checkpoint_every/sync_every), data size or world size differ, and
    [`CheckpointError`][hyperlab.io.CheckpointError] if ``last.pt`` is unreadable.
    """
    run = _prepare(model, loss_fn, data, config, evaluate, transform, checkpoint_dir, device,
                   stop_after_epochs)  # fmt: skip
    model.to(run.device)
    state = TrainState.new(model, config, run)
    if resume and run.ckpt_path is not None:
        _resume(state, config, run)
    train_model: nn.Module = model
    if run.world > 1:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    end = config.epochs if stop_after_epochs is None else min(config.epochs, stop_after_epochs)
    steps = math.ceil(run.shard / config.batch_size)
    bar = tqdm(total=config.epochs * steps, initial=state.epoch * steps, desc=config.desc,
               unit="step", dynamic_ncols=True,
               disable=True if (not config.progress or run.rank != 0) else None)  # fmt: skip
    log = _EpochLog(run.ckpt_path.parent if run.ckpt_path is not None else None)
    first = state.epoch
    try:
        for epoch in range(state.epoch + 1, end + 1):
            t0 = time.perf_counter()
            with input_checks(False):  # but the first batch of this call: see _train_epoch
                train_loss = _train_epoch(state, train_model, loss_fn, data, transform, config,
                                          run, epoch, bar, epoch == first + 1)  # fmt: skip
            record: dict[str, float] = {"epoch": epoch, "train_loss": train_loss}
            metrics = _evaluate(model, train_model, evaluate)
            record["seconds"] = time.perf_counter() - t0
            record.update(metrics)
            state.history.records.append(record)
            state.epoch = epoch
            if run.ckpt_path is not None and run.rank == 0:
                log.write(state.history)
            bar.set_postfix({"epoch": str(epoch), "loss": f"{train_loss:.4g}",
                             **{k: f"{v:.4g}" for k, v in metrics.items()}})  # fmt: skip
            if run.ckpt_path is not None and (epoch % config.checkpoint_every == 0 or epoch == end):
                _save_checkpoint(state, config, run)
    finally:
        bar.close()
        log.close()
    return state.history


def _prepare(model: nn.Module, loss_fn: Any, data: Mapping[str, Tensor], config: Any,
             evaluate: Any, transform: Any, checkpoint_dir: str | Path | None,
             device: str | torch.device, stop_after_epochs: int | None) -> _Run:  # fmt: skip
    """Check [`fit`][hyperlab.train.loop.fit]'s arguments and find the device, ranks and checkpoint
    file."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, fn in (("loss_fn", loss_fn), ("evaluate", evaluate), ("transform", transform)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    if loss_fn is None:
        raise TypeError("loss_fn must be callable, got None")
    if stop_after_epochs is not None and (not _is_int(stop_after_epochs) or stop_after_epochs < 1):
        raise ValueError(
            f"stop_after_epochs must be a positive int or None, got {stop_after_epochs!r}"
        )
    n = _check_data(data)
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    rank, world = (dist.get_rank(), dist.get_world_size()) if (
        dist.is_available() and dist.is_initialized()) else (0, 1)  # fmt: skip
    if n // world == 0:
        raise ValueError(f"data has {n} samples, fewer than the {world} distributed ranks")
    run = _Run(dev, rank, world, n, list(data.keys()), None)
    if checkpoint_dir is not None:
        ckpt_dir = Path(checkpoint_dir).expanduser()
        dir_error: OutputDirError | None = None
        if rank == 0:
            try:
                ensure_writable_dir(ckpt_dir, argument="checkpoint_dir")
            except OutputDirError as e:
                dir_error = e
        if run.any_rank(dir_error is not None):
            raise dir_error or OutputDirError(f"checkpoint_dir: rank 0 cannot write {ckpt_dir}")
        run.ckpt_path = ckpt_dir / CHECKPOINT_NAME
    return run


def _check_data(data: Mapping[str, Tensor]) -> int:
    if not isinstance(data, Mapping) or not data:
        raise ValueError("data must be a non-empty dict of tensors, e.g. {'x': X, 'y': Y}")
    n: int | None = None
    first = ""
    for key, t in data.items():
        if not isinstance(key, str):
            raise TypeError(f"data keys must be strings, got {key!r}")
        if not isinstance(t, Tensor):
            raise TypeError(f"data[{key!r}] must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim == 0:
            raise ValueError(f"data[{key!r}] is a 0-d tensor; expected a leading sample dimension")
        if n is None:
            n, first = t.shape[0], key
        elif t.shape[0] != n:
            raise ValueError(
                f"data tensors must have the same length (dim 0): data[{first!r}] has {n} "
                f"samples but data[{key!r}] has {t.shape[0]}"
            )
    assert n is not None
    if n == 0:
        raise ValueError("data is empty: its tensors have 0 samples")
    return n


def _train_epoch(state: TrainState, train_model: nn.Module, loss_fn: LossFn,
                 data: Mapping[str, Tensor], transform: TransformFn | None, config: TrainConfig,
                 run: _Run, epoch: int, bar: Any, check_first: bool) -> float:  # fmt: skip
    """One pass over this rank's share of a seeded permutation; returns the mean loss. The
    input checks run on the first minibatch when ``check_first``."""
    train_model.train()
    perm_gen = torch.Generator()
    perm_gen.manual_seed(_derive_seed("perm", config.seed, epoch))
    perm = torch.randperm(run.n, generator=perm_gen)
    if run.world > 1:
        perm = perm[run.rank * run.shard : (run.rank + 1) * run.shard]
    perms = {t.device: perm.to(t.device) for t in data.values()}
    steps = math.ceil(run.shard / config.batch_size)
    every = config.sync_every or (GPU_SYNC_EVERY if run.device.type == "cuda" else 1)
    meter = _LossMeter(run, epoch, every)
    k = config.accumulate
    for step in range(1, steps + 1):
        lo, hi = (step - 1) * config.batch_size, step * config.batch_size
        batch = {key: t[perms[t.device][lo:hi]].to(run.device) for key, t in data.items()}
        if transform is not None:
            batch = transform(batch, state.transform_gen)
            if not isinstance(batch, dict):
                raise TypeError(
                    f"transform must return a dict of tensors, got {type(batch).__name__}"
                )
        group_start = (step - 1) // k * k  # minibatches before this one's accumulation group
        group = min(k, steps - group_start)
        last_of_group = step - group_start == group
        sync = contextlib.nullcontext()
        if run.world > 1 and not last_of_group:
            sync = train_model.no_sync()  # type: ignore[operator]
        checks = input_checks(True) if check_first and step == 1 else contextlib.nullcontext()
        with sync:
            with checks, autocast(config.precision, run.device):
                loss = loss_fn(train_model, batch)
            if not isinstance(loss, Tensor) or loss.ndim != 0:
                shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
                raise TypeError(f"loss_fn must return a scalar tensor, got {shape}")
            meter.add(loss.detach(), step, min(hi, run.shard) - lo, check=last_of_group)
            scaled = loss.float() / group if group > 1 else loss
            if state.scaler is not None:
                scaled = state.scaler.scale(scaled)
            scaled.backward()
        if last_of_group:
            _optimizer_step(state, config)
        bar.update(1)
        if meter.value is not None:
            bar.set_postfix({"epoch": str(epoch), "loss": f"{meter.value:.4g}"}, refresh=False)
    return meter.mean()


def _optimizer_step(state: TrainState, config: TrainConfig) -> None:
    """Clip (after unscaling), step, zero the gradients, advance the schedule."""
    params = [p for g in state.optimizer.param_groups for p in g["params"]]
    if state.scaler is not None:
        if config.grad_clip is not None:
            state.scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        state.scaler.step(state.optimizer)  # skipped (and the scale lowered) on inf/NaN grads
        state.scaler.update()
    else:
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():  # the schedule advances on a step the scaler skipped too
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step()`")
        state.scheduler.step()


class _LossMeter:
    """Per-minibatch losses kept on the device and read back every ``every`` minibatches (and
    before each optimizer step when ``every`` is 1): the only host synchronisation of a step.
    Under DDP the read-back is an all-reduce, so a NaN on any rank stops every rank."""

    def __init__(self, run: _Run, epoch: int, every: int):
        self.run, self.epoch, self.every = run, epoch, every
        self.pending: list[tuple[Tensor, int, int]] = []  # (loss, step, size)
        self.total, self.count = 0.0, 0
        self.value: float | None = None  # the last minibatch's loss read back (for the bar)

    def add(self, loss: Tensor, step: int, size: int, *, check: bool) -> None:
        self.pending.append((loss, step, size))
        if len(self.pending) >= self.every and (check or self.every > 1):
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        losses = torch.stack([p[0].float() for p in self.pending]).double()
        sizes = torch.tensor([p[2] for p in self.pending], dtype=torch.float64)
        values = losses.cpu()  # the read-back
        steps = [p[1] for p in self.pending]
        self.pending = []
        if self.run.world > 1:
            finite = torch.isfinite(values)
            stats = torch.stack([torch.where(finite, values, 0.0) * sizes, sizes,
                                 (~finite).double()], 1).to(self.run.reduce_device)  # fmt: skip
            dist.all_reduce(stats)
            stats = stats.cpu()
            for i, step in enumerate(steps):
                if stats[i, 2] > 0:
                    where = f" on {int(stats[i, 2])} of {self.run.world} ranks"
                    raise TrainingDiverged(self.epoch, step, float(values[i]), where=where)
            sums, counts = stats[:, 0], stats[:, 1]
        else:
            for i, step in enumerate(steps):
                if not math.isfinite(float(values[i])):
                    raise TrainingDiverged(self.epoch, step, float(values[i]))
            sums, counts = values * sizes, sizes
        self.total += float(sums.sum())
        self.count += int(counts.sum())
        self.value = float(sums[-1] / counts[-1])

    def mean(self) -> float:
        self.flush()
        return self.total / self.count


def _evaluate(model: nn.Module, train_model: nn.Module, evaluate: EvaluateFn | None
              ) -> dict[str, float]:  # fmt: skip
    """``evaluate(model)`` in eval mode without gradients; the model goes back to train."""
    if evaluate is None:
        return {}
    model.eval()
    try:
        with torch.no_grad():
            return _check_metrics(evaluate(model))
    finally:
        train_model.train()


class _EpochLog:
    """Per-epoch logs beside the checkpoint: ``history.csv`` (rewritten atomically each epoch)
    and, when the optional ``tensorboard`` package is installed, TensorBoard event files under
    ``tensorboard/``."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.writer: Any = None
        if folder is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional: the extra
            except ImportError:  # tensorboard is an optional extra
                return
            self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))

    def write(self, history: History) -> None:
        assert self.folder is not None
        keys: list[str] = []
        for r in history.records:
            keys += [k for k in r if k not in keys]
        rows = [",".join(keys)] + [
            ",".join(repr(r.get(k, "")) for k in keys) for r in history.records
        ]
        atomic_write_text(
            self.folder / "history.csv", "\n".join(rows) + "\n", what="the per-epoch history"
        )
        if self.writer is not None:  # the newest epoch only (earlier ones are already logged)
            r = history.records[-1]
            for k, v in r.items():
                if k != "epoch":
                    self.writer.add_scalar(k, v, int(r["epoch"]))
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
