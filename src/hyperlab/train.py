"""The one training loop used by every hyperlab model and experiment.

:func:`fit` trains any ``nn.Module`` on a dict of equal-length in-memory tensors with
minibatch SGD or Adam, records a per-epoch :class:`History`, and (optionally) writes an
atomic checkpoint from which an interrupted run resumes *bit-identically*.

Randomness. Everything that is not model initialisation is derived from ``config.seed``:

* the epoch permutation comes from a fresh ``torch.Generator`` seeded from ``(seed, epoch)``;
* ``transform(batch, generator)`` receives a long-lived ``torch.Generator`` (CPU) seeded from
  ``(seed, rank)`` whose state is checkpointed;
* the global torch RNG (dropout, ``torch.rand`` inside ``loss_fn``/``evaluate``) is reseeded from
  ``(seed, rank)`` when a run starts fresh, and its state (plus the CUDA one when training on a
  GPU) is checkpointed and restored on resume. NumPy's and Python's RNGs are not touched or
  saved: draw randomness through torch to keep resume exact.

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
import ctypes
import ctypes.util
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from .io import (
    CheckpointError,
    OutputDirError,
    atomic_torch_save,
    atomic_write_text,
    ensure_writable_dir,
    safe_torch_load,
)

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointMismatchError",
    "History",
    "TrainConfig",
    "TrainingDiverged",
    "fit",
    "keep_freed_memory",
]

CHECKPOINT_NAME = "last.pt"
_FORMAT = "hyperlab.train/1"
# Config fields that do not change the trained parameters: they may differ on resume.
_FREE_FIELDS = frozenset({"epochs", "progress", "desc", "checkpoint_every"})
_RESERVED_KEYS = ("epoch", "train_loss", "seconds")

LossFn = Callable[[nn.Module, dict[str, Tensor]], Tensor]
EvaluateFn = Callable[[nn.Module], Mapping[str, float]]
TransformFn = Callable[[dict[str, Tensor], torch.Generator], dict[str, Tensor]]


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters
_kept_depth = 0  # open keep_freed_memory() blocks


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Within the block, glibc keeps freed memory for reuse: large blocks are not mmap'd and the
    heap is not trimmed, so a training step's large CPU tensors reuse warm pages instead of
    page-faulting fresh ones every step (the generating paper's step: ~20 % faster,
    ``benchmarks/generative_step.py``). The same as ``MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=...`` for the process; on leaving the outermost block glibc's
    default limits come back and the kept memory is returned (``malloc_trim``), though a large
    block that later fits a free hole in the heap is served from it. Blocks nest. Yields False,
    and changes nothing, without glibc."""
    global _kept_depth
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        yield False
        return
    ok = True
    if _kept_depth == 0:  # nested blocks: only the outermost one sets and undoes
        ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    _kept_depth += 1
    try:
        yield ok
    finally:
        _kept_depth -= 1
        if _kept_depth == 0:
            mallopt(_M_MMAP_MAX, 65536)
            mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
            trim(0)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; raised before the offending optimizer step."""

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


@dataclass
class TrainConfig:
    """Hyperparameters of :func:`fit`. Validated on construction and again by ``fit``.

    ``lr_decay`` multiplies the learning rate after every optimizer step (``ExponentialLR``
    stepped per batch; 1.0 = constant). ``momentum`` applies to SGD only. ``checkpoint_every``
    is in epochs; a checkpoint is also written at the end. ``progress`` shows a tqdm bar
    (automatically hidden when stderr is not a terminal).
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    seed: int = 0
    checkpoint_every: int = 1
    progress: bool = True
    desc: str = "train"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""

        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"TrainConfig.{name} must be {expected}, got {getattr(self, name)!r}")

        for name in ("epochs", "batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if not _is_int(v) or v <= 0:
                raise bad(name, "a positive int")
        for name in ("lr", "lr_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(name, "a positive finite number")
        for name in ("momentum", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(name, "a non-negative finite number")
        if self.optimizer not in ("sgd", "adam"):
            raise bad("optimizer", "'sgd' or 'adam'")
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


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _rng_state(gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state(), "transform": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Tensor], gen: torch.Generator, device: torch.device):
    torch.set_rng_state(state["torch"])
    gen.set_state(state["transform"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _check_checkpoint(
    state: Any, path: Path, config: TrainConfig, n: int, keys: list[str], world: int
) -> None:
    """Raise if ``state`` is not ours or was written by a run with different results."""
    needed = ("model", "optimizer", "scheduler", "epoch", "history", "rng", "config")
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a hyperlab training checkpoint (no {_FORMAT!r} tag)")
    if any(k not in state for k in needed):
        missing = [k for k in needed if k not in state]
        raise CheckpointError(f"{path}: incomplete training checkpoint, missing {missing}")
    hint = "pass resume=False to start over, or use another checkpoint_dir"
    saved = state["config"]
    for name, value in config.to_dict().items():
        if name in _FREE_FIELDS:
            continue
        if name not in saved or saved[name] != value:
            old = saved.get(name, "<missing>")
            raise CheckpointMismatchError(
                f"{path}: checkpoint was written with {name}={old!r} but the config has "
                f"{name}={value!r}; only {sorted(_FREE_FIELDS)} may change on resume ({hint})"
            )
    data_info = state.get("data", {})
    if data_info.get("size") != n or data_info.get("keys") != keys:
        raise CheckpointMismatchError(
            f"{path}: checkpoint was trained on data with keys {data_info.get('keys')} and "
            f"{data_info.get('size')} samples, now keys {keys} and {n} samples ({hint})"
        )
    if state.get("world_size") != world or len(state["rng"]) != world:
        raise CheckpointMismatchError(
            f"{path}: checkpoint was written with world_size={state.get('world_size')}, "
            f"now {world} ({hint})"
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
    epochs/progress/desc/checkpoint_every), data size or world size differ, and
    :class:`~hyperlab.io.CheckpointError` if ``last.pt`` is unreadable.
    """
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
    keys = list(data.keys())
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    rank, world = _dist_info()
    shard = n // world
    if shard == 0:
        raise ValueError(f"data has {n} samples, fewer than the {world} distributed ranks")

    reduce_device = device if world > 1 and dist.get_backend() == "nccl" else torch.device("cpu")

    ckpt_path: Path | None = None
    if checkpoint_dir is not None:
        ckpt_dir = Path(checkpoint_dir).expanduser()
        dir_error: OutputDirError | None = None
        if rank == 0:
            try:
                ensure_writable_dir(ckpt_dir, argument="checkpoint_dir")
            except OutputDirError as e:
                dir_error = e
        if _any_rank(dir_error is not None, world, reduce_device):
            raise dir_error or OutputDirError(f"checkpoint_dir: rank 0 cannot write {ckpt_dir}")
        ckpt_path = ckpt_dir / CHECKPOINT_NAME

    log = _EpochLog(ckpt_path.parent if ckpt_path is not None else None)
    model.to(device)
    optimizer = _make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    transform_gen = torch.Generator()
    transform_gen.manual_seed(_derive_seed("transform", config.seed, rank))
    torch.manual_seed(_derive_seed("torch", config.seed, rank))
    history = History()
    start_epoch = 0

    # Rank 0 decides whether to resume, so all ranks start from the same epoch.
    found = ckpt_path is not None and rank == 0 and ckpt_path.exists()
    if resume and ckpt_path is not None and _any_rank(found, world, reduce_device):
        state = safe_torch_load(ckpt_path)
        _check_checkpoint(state, ckpt_path, config, n, keys, world)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointMismatchError(
                f"{ckpt_path}: the saved parameters do not fit this model: {e}"
            ) from e
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = History([dict(r) for r in state["history"]])
        start_epoch = int(state["epoch"])
        _set_rng_state(state["rng"][rank], transform_gen, device)

    train_model: nn.Module = model
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    end_epoch = (
        config.epochs if stop_after_epochs is None else min(config.epochs, stop_after_epochs)
    )
    steps_per_epoch = math.ceil(shard / config.batch_size)
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        desc=config.desc,
        unit="step",
        dynamic_ncols=True,
        disable=True if (not config.progress or rank != 0) else None,
    )
    postfix: dict[str, str] = {}
    try:
        for epoch in range(start_epoch + 1, end_epoch + 1):
            t0 = time.perf_counter()
            train_model.train()
            perm_gen = torch.Generator()
            perm_gen.manual_seed(_derive_seed("perm", config.seed, epoch))
            perm = torch.randperm(n, generator=perm_gen)
            if world > 1:
                perm = perm[rank * shard : (rank + 1) * shard]
            perms = {t.device: perm.to(t.device) for t in data.values()}
            total, count = 0.0, 0
            for step in range(1, steps_per_epoch + 1):
                lo, hi = (step - 1) * config.batch_size, step * config.batch_size
                batch = {k: t[perms[t.device][lo:hi]].to(device) for k, t in data.items()}
                if transform is not None:
                    batch = transform(batch, transform_gen)
                    if not isinstance(batch, dict):
                        raise TypeError(
                            f"transform must return a dict of tensors, got {type(batch).__name__}"
                        )
                loss = loss_fn(train_model, batch)
                if not isinstance(loss, Tensor) or loss.ndim != 0:
                    shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
                    raise TypeError(f"loss_fn must return a scalar tensor, got {shape}")
                size = min(hi, shard) - lo
                value = loss.item()
                if world > 1:
                    stats = torch.tensor(
                        [value * size, size, 0.0 if math.isfinite(value) else 1.0],
                        dtype=torch.float64,
                        device=reduce_device,
                    )
                    dist.all_reduce(stats)
                    bad_ranks = int(stats[2].item())
                    if bad_ranks:
                        where = f" on {bad_ranks} of {world} ranks"
                        raise TrainingDiverged(epoch, step, value, where=where)
                    step_sum, step_count = stats[0].item(), int(stats[1].item())
                else:
                    if not math.isfinite(value):
                        raise TrainingDiverged(epoch, step, value)
                    step_sum, step_count = value * size, size
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += step_sum
                count += step_count
                postfix["epoch"] = str(epoch)
                postfix["loss"] = f"{step_sum / step_count:.4g}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)

            record: dict[str, float] = {"epoch": epoch, "train_loss": total / count}
            metrics: dict[str, float] = {}
            if evaluate is not None:
                model.eval()
                try:
                    with torch.no_grad():
                        metrics = _check_metrics(evaluate(model))
                finally:
                    train_model.train()
            record["seconds"] = time.perf_counter() - t0
            record.update(metrics)
            history.records.append(record)
            if ckpt_path is not None and rank == 0:
                log.write(history)
            for k, v in metrics.items():
                postfix[k] = f"{v:.4g}"
            bar.set_postfix(postfix)

            if ckpt_path is not None and (
                epoch % config.checkpoint_every == 0 or epoch == end_epoch
            ):
                _save_checkpoint(
                    ckpt_path, model, optimizer, scheduler, epoch, history, config,
                    transform_gen, device, n, keys, rank, world, reduce_device,
                )  # fmt: skip
    finally:
        bar.close()
        log.close()
    return history


class _EpochLog:
    """Per-epoch logs beside the checkpoint: ``history.csv`` (rewritten atomically each epoch)
    and, when the optional ``tensorboard`` package is installed, TensorBoard event files under
    ``tensorboard/``."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.writer: Any = None
        if folder is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
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
        atomic_write_text(self.folder / "history.csv", "\n".join(rows) + "\n")
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


def _save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    history: History,
    config: TrainConfig,
    transform_gen: torch.Generator,
    device: torch.device,
    n: int,
    keys: list[str],
    rank: int,
    world: int,
    reduce_device: torch.device,
) -> None:
    """Write ``last.pt`` atomically (rank 0 only; every rank's RNG state is gathered).

    Under DDP this is also a barrier: every rank returns once the file is in place, and
    every rank raises if rank 0 could not write it.
    """
    rng = _rng_state(transform_gen, device)
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, {k: v.cpu() for k, v in rng.items()})
        rngs = gathered
    else:
        rngs = [rng]
    error: BaseException | None = None
    if rank == 0:
        try:
            atomic_torch_save(_checkpoint_state(model, optimizer, scheduler, epoch, history,
                                                config, rngs, n, keys, world), path)  # fmt: skip
        except BaseException as e:  # re-raised below, after telling the other ranks
            error = e
    if _any_rank(error is not None, world, reduce_device) and error is None:
        raise RuntimeError(f"rank 0 failed to write the checkpoint {path}")
    if error is not None:
        raise error


def _checkpoint_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    history: History,
    config: TrainConfig,
    rngs: list[Any],
    n: int,
    keys: list[str],
    world: int,
) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": [dict(r) for r in history.records],
        "rng": rngs,
        "config": config.to_dict(),
        "data": {"size": n, "keys": list(keys)},
        "world_size": world,
    }


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (a collective under DDP, so also a barrier)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)
