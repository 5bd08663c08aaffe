"""What [`hyperlab.train.fit`][hyperlab.train.loop.fit] is told and what it returns:
[`TrainConfig`][hyperlab.train.config.TrainConfig], the
per-epoch [`History`][hyperlab.train.config.History], the errors it raises, and
[`autocast`][hyperlab.train.config.autocast] for its precisions."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

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
    """``torch.autocast`` for a ``PRECISIONS`` value on
    ``device`` (fp32: a no-op)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@dataclass
class TrainConfig:
    """Hyperparameters of [`fit`][hyperlab.train.loop.fit]. Validated on construction and again by
    ``fit``.

    ``lr_decay`` multiplies the learning rate after every optimizer step (``ExponentialLR``
    stepped per optimizer step; 1.0 = constant). ``momentum`` applies to SGD only.
    ``precision`` runs the forward pass (``loss_fn``) under autocast to bf16 or fp16 with
    float32 weights, gradients and optimizer state (fp16 adds a ``GradScaler``).
    ``grad_clip`` clips the global gradient norm before each step; ``accumulate`` sums the
    gradients of that many minibatches per optimizer step (the loss of each is divided by the
    number of minibatches in its group). ``checkpoint_every`` is in epochs; a checkpoint is
    also written at the end. ``sync_every`` is how often (in minibatches) the loss is read back
    to the host and checked (None: every step on the CPU, every
    ``GPU_SYNC_EVERY`` on a
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
        """Inverse of [`to_dict`][hyperlab.train.config.TrainConfig.to_dict]; unknown keys raise
        ``TypeError``."""
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
        """Inverse of [`to_dict`][hyperlab.train.config.TrainConfig.to_dict]."""
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
