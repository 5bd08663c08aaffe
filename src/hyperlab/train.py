"""The one training loop used by every hyperlab model and experiment.

:func:`fit` trains any ``nn.Module`` on a dict of equal-length in-memory tensors with
minibatch SGD or Adam, records a per-epoch :class:`History`, and (optionally) writes an
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
(:func:`hyperlab.runtime.input_checks`), and the loss is read back to the host every
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
import dataclasses
import hashlib
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyperlab.io import (
    CheckpointError,
    OutputDirError,
    atomic_torch_save,
    atomic_write_text,
    ensure_writable_dir,
    safe_torch_load,
)
from hyperlab.runtime import input_checks

__all__ = [
    "CHECKPOINT_NAME",
    "PRECISIONS",
    "CheckpointMismatchError",
    "History",
    "TrainConfig",
    "TrainingDiverged",
    "autocast",
    "fit",
]

CHECKPOINT_NAME = "last.pt"
_FORMAT = "hyperlab.train/1"
# Config fields that do not change the trained parameters: they may differ on resume.
_FREE_FIELDS = frozenset({"epochs", "progress", "desc", "checkpoint_every", "sync_every"})
_RESERVED_KEYS = ("epoch", "train_loss", "seconds")
#: ``TrainConfig.precision`` values: float32, or autocast to bfloat16 / float16 (float32 weights)
PRECISIONS = ("fp32", "bf16", "fp16")
#: loss read-backs on a GPU when ``sync_every`` is None (every step on the CPU)
GPU_SYNC_EVERY = 50

LossFn = Callable[[nn.Module, dict[str, Tensor]], Tensor]
EvaluateFn = Callable[[nn.Module], Mapping[str, float]]
TransformFn = Callable[[dict[str, Tensor], torch.Generator], dict[str, Tensor]]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; raised before the offending optimizer step (when the
    loss is read every step, as on the CPU; else at the next read-back, ``sync_every``)."""

    def __init__(self, epoch: int, step: int, loss: float, where: str = "") -> None:
        self.epoch, self.step, self.loss = epoch, step, loss
        what = f"loss is {loss}" if not math.isfinite(loss) else "loss is not finite"
        super().__init__(
            f"training diverged: {what} at epoch {epoch}, step {step}{where}; "
            "the parameters are those before this step. Lower lr, or check the data and loss_fn."
        )


class CheckpointMismatchError(ValueError):
    """An existing checkpoint was written by a run whose results would differ from this one."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for a :data:`PRECISIONS` value on ``device`` (fp32: a no-op)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@dataclass
class TrainConfig:
    """Hyperparameters of :func:`fit`. Validated on construction and again by ``fit``.

    ``lr_decay`` multiplies the learning rate after every optimizer step (``ExponentialLR``
    stepped per optimizer step; 1.0 = constant). ``momentum`` applies to SGD only.
    ``precision`` runs the forward pass (``loss_fn``) under autocast to bf16 or fp16 with
    float32 weights, gradients and optimizer state (fp16 adds a ``GradScaler``).
    ``grad_clip`` clips the global gradient norm before each step; ``accumulate`` sums the
    gradients of that many minibatches per optimizer step (the loss of each is divided by the
    number of minibatches in its group). ``checkpoint_every`` is in epochs; a checkpoint is
    also written at the end. ``sync_every`` is how often (in minibatches) the loss is read back
    to the host and checked (None: every step on the CPU, every :data:`GPU_SYNC_EVERY` on a
    GPU). ``progress`` shows a tqdm bar (automatically hidden when stderr is not a terminal).
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    grad_clip: float | None = None
    accumulate: int = 1
    checkpoint_every: int = 1
    sync_every: int | None = None
    progress: bool = True
    desc: str = "train"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""

        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"TrainConfig.{name} must be {expected}, got {getattr(self, name)!r}")

        for name in ("epochs", "batch_size", "checkpoint_every", "accumulate"):
            v = getattr(self, name)
            if not _is_int(v) or v <= 0:
                raise bad(name, "a positive int")
        if self.sync_every is not None and (not _is_int(self.sync_every) or self.sync_every <= 0):
            raise bad("sync_every", "a positive int or None")
        for name in ("lr", "lr_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(name, "a positive finite number")
        for name in ("momentum", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(name, "a non-negative finite number")
        clip = self.grad_clip
        if clip is not None and (not isinstance(clip, (int, float)) or not math.isfinite(clip)
                                 or clip <= 0):  # fmt: skip
            raise bad("grad_clip", "a positive finite number or None")
        if self.optimizer not in ("sgd", "adam"):
            raise bad("optimizer", "'sgd' or 'adam'")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"one of {PRECISIONS}")
        if self.optimizer == "adam" and self.momentum != 0:
            raise bad("momentum", "0 with optimizer='adam' (momentum is an SGD setting)")
        if not _is_int(self.seed):
            raise bad("seed", "an int")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (stored in checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        return cls(**d)


@dataclass
class History:
    """Per-epoch records: ``{"epoch", "train_loss", "seconds", **evaluate(model)}``."""

    records: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"records": [...]}`` (copies)."""
        return {"records": [dict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls([dict(r) for r in d["records"]])

    def last(self) -> dict[str, float]:
        """The most recent record (a copy); ``IndexError`` if there is none."""
        if not self.records:
            raise IndexError("History is empty: no epoch has been recorded")
        return dict(self.records[-1])

    def series(self, key: str) -> list[float]:
        """The values of ``key`` over epochs; ``KeyError`` if some record lacks it."""
        missing = [r.get("epoch") for r in self.records if key not in r]
        if missing:
            known = sorted({k for r in self.records for k in r})
            raise KeyError(f"{key!r} missing in the records of epochs {missing}; keys: {known}")
        return [r[key] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)


def _derive_seed(*parts: object) -> int:
    """A 63-bit seed from a tuple, stable across runs and platforms (unlike ``hash``)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


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


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class _Run:
    """What one call of :func:`fit` runs on: device, ranks, data size, checkpoint file."""

    device: torch.device
    rank: int
    world: int
    n: int
    keys: list[str]
    ckpt_path: Path | None

    @property
    def shard(self) -> int:
        return self.n // self.world

    @property
    def reduce_device(self) -> torch.device:
        """Where collectives run: the GPU under nccl, else the CPU."""
        nccl = self.world > 1 and dist.get_backend() == "nccl"
        return self.device if nccl else torch.device("cpu")

    def any_rank(self, flag: bool) -> bool:
        return _any_rank(flag, self.world, self.reduce_device)


@dataclass
class TrainState:
    """Everything a checkpoint holds and a resumed run continues from."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    transform_gen: torch.Generator
    history: History = field(default_factory=lambda: History())
    epoch: int = 0

    @classmethod
    def new(cls, model: nn.Module, config: TrainConfig, run: _Run) -> TrainState:
        """Fresh optimizer, schedule and RNG streams for ``config.seed`` on this rank."""
        optimizer = _make_optimizer(model, config)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
        scaler = torch.amp.GradScaler(run.device.type) if config.precision == "fp16" else None
        gen = torch.Generator()
        gen.manual_seed(_derive_seed("transform", config.seed, run.rank))
        torch.manual_seed(_derive_seed("torch", config.seed, run.rank))
        return cls(model, optimizer, scheduler, scaler, gen)

    def rng(self, device: torch.device) -> dict[str, Tensor]:
        state = {"torch": torch.get_rng_state(), "transform": self.transform_gen.get_state()}
        if device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(device)
        return state

    def to_checkpoint(self, config: TrainConfig, rngs: list[Any], run: _Run) -> dict[str, Any]:
        out = {
            "format": _FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "history": [dict(r) for r in self.history.records],
            "rng": rngs,
            "config": config.to_dict(),
            "data": {"size": run.n, "keys": list(run.keys)},
            "world_size": run.world,
        }
        if self.scaler is not None:
            out["scaler"] = self.scaler.state_dict()
        return out

    def load(self, state: Mapping[str, Any], path: Path, run: _Run) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointMismatchError(
                f"{path}: the saved parameters do not fit this model: {e}"
            ) from e
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.history = History([dict(r) for r in state["history"]])
        self.epoch = int(state["epoch"])
        rng = state["rng"][run.rank]
        torch.set_rng_state(rng["torch"])
        self.transform_gen.set_state(rng["transform"])
        if run.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], run.device)


def _check_checkpoint(state: Any, path: Path, config: TrainConfig, run: _Run) -> None:
    """Raise if ``state`` is not ours or was written by a run with different results."""
    needed = ("model", "optimizer", "scheduler", "epoch", "history", "rng", "config")
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a hyperlab training checkpoint (no {_FORMAT!r} tag)")
    if any(k not in state for k in needed):
        missing = [k for k in needed if k not in state]
        raise CheckpointError(f"{path}: incomplete training checkpoint, missing {missing}")
    hint = "pass resume=False to start over, or use another checkpoint_dir"
    saved = state["config"]
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name, value in config.to_dict().items():
        if name in _FREE_FIELDS:
            continue
        old = saved.get(name, defaults[name])  # a field newer than the checkpoint: its default
        if old != value:
            raise CheckpointMismatchError(
                f"{path}: checkpoint was written with {name}={old!r} but the config has "
                f"{name}={value!r}; only {sorted(_FREE_FIELDS)} may change on resume ({hint})"
            )
    data_info = state.get("data", {})
    if data_info.get("size") != run.n or data_info.get("keys") != run.keys:
        raise CheckpointMismatchError(
            f"{path}: checkpoint was trained on data with keys {data_info.get('keys')} and "
            f"{data_info.get('size')} samples, now keys {run.keys} and {run.n} samples ({hint})"
        )
    if state.get("world_size") != run.world or len(state["rng"]) != run.world:
        raise CheckpointMismatchError(
            f"{path}: checkpoint was written with world_size={state.get('world_size')}, "
            f"now {run.world} ({hint})"
        )
    if state["epoch"] > config.epochs:
        raise CheckpointMismatchError(
            f"{path}: checkpoint is at epoch {state['epoch']} but config.epochs="
            f"{config.epochs}; a finished run cannot be shortened ({hint})"
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

    Raises ``ValueError``/``TypeError`` for bad inputs, :class:`TrainingDiverged` on a
    non-finite loss, :class:`CheckpointMismatchError` if the checkpoint's config (other than
    epochs/progress/desc/checkpoint_every/sync_every), data size or world size differ, and
    :class:`~hyperlab.io.CheckpointError` if ``last.pt`` is unreadable.
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
    """Check :func:`fit`'s arguments and find the device, ranks and checkpoint file."""
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


def _resume(state: TrainState, config: TrainConfig, run: _Run) -> None:
    """Load ``last.pt`` if rank 0 finds one (all ranks then resume from the same epoch)."""
    path = run.ckpt_path
    assert path is not None
    if run.any_rank(run.rank == 0 and path.exists()):
        saved = safe_torch_load(path)
        _check_checkpoint(saved, path, config, run)
        state.load(saved, path, run)


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


def _save_checkpoint(state: TrainState, config: TrainConfig, run: _Run) -> None:
    """Write ``last.pt`` atomically (rank 0 only; every rank's RNG state is gathered).

    Under DDP this is also a barrier: every rank returns once the file is in place, and
    every rank raises if rank 0 could not write it.
    """
    assert run.ckpt_path is not None
    rng = state.rng(run.device)
    if run.world > 1:
        gathered: list[Any] = [None] * run.world
        dist.all_gather_object(gathered, {k: v.cpu() for k, v in rng.items()})
        rngs = gathered
    else:
        rngs = [rng]
    error: BaseException | None = None
    if run.rank == 0:
        try:
            atomic_torch_save(
                state.to_checkpoint(config, rngs, run),
                run.ckpt_path,
                what="the training checkpoint",
            )
        except BaseException as e:  # re-raised below, after telling the other ranks
            error = e
    if run.any_rank(error is not None) and error is None:
        raise RuntimeError(f"rank 0 failed to write the checkpoint {run.ckpt_path}")
    if error is not None:
        raise error


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


def _check_metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"evaluate must return a dict of floats, got {type(metrics).__name__}")
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or k in _RESERVED_KEYS:
            raise ValueError(
                f"evaluate returned key {k!r}; keys must be strings other than {_RESERVED_KEYS}"
            )
        try:
            out[k] = float(v)
        except (TypeError, ValueError) as e:
            raise TypeError(f"evaluate returned {k!r}={v!r}, which is not a float") from e
    return out


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (a collective under DDP, so also a barrier)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)
