"""The training state a checkpoint holds, and the checkpoint itself: written atomically by rank
0 (every rank's RNG state gathered), checked against the run's config, data and world size
before a run resumes from it."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from hyperlab.io import CheckpointError, atomic_torch_save, safe_torch_load
from hyperlab.train.config import CheckpointMismatchError, History, TrainConfig

CHECKPOINT_NAME = "last.pt"
_FORMAT = "hyperlab.train/1"
# Config fields that do not change the trained parameters: they may differ on resume.
_FREE_FIELDS = frozenset({"epochs", "progress", "desc", "checkpoint_every", "sync_every"})


def _derive_seed(*parts: object) -> int:
    """A 63-bit seed from a tuple, stable across runs and platforms (unlike ``hash``)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


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
    """What one call of [`fit`][hyperlab.train.loop.fit] runs on: device, ranks, data size,
    checkpoint
    file."""

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


def _resume(state: TrainState, config: TrainConfig, run: _Run) -> None:
    """Load ``last.pt`` if rank 0 finds one (all ranks then resume from the same epoch)."""
    path = run.ckpt_path
    assert path is not None
    if run.any_rank(run.rank == 0 and path.exists()):
        saved = safe_torch_load(path)
        _check_checkpoint(saved, path, config, run)
        state.load(saved, path, run)


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


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (a collective under DDP, so also a barrier)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)
