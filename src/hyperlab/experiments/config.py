"""Typed experiment configs: one frozen dataclass per experiment, checked on construction.

Every field is declared with [`param`][hyperlab.experiments.config.param]: its default (the paper's
setting, i.e. the ``full``
preset), one line saying what it means, and optional checks (``min``, ``choices``, non-empty
lists). Presets (``quick``, ``tiny``, named variants) are overrides of those defaults, and so are
``--set key=value`` overrides: every value goes through the same type and range check, so a bad
value is an error naming the key before anything runs.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Config", "ConfigError", "param", "parse_overrides"]


class ConfigError(ValueError):
    """A config value of the wrong type or outside its range; the message names the key."""


def param(
    default: Any,
    doc: str,
    *,
    min: float | None = None,  # noqa: A002 - reads naturally at the call sites
    positive: bool = False,
    choices: Sequence[Any] | None = None,
    nonempty: bool = True,
) -> Any:
    """A documented config field. ``min``: smallest allowed number, ``positive``: must be > 0
    (each element of a list); ``choices``: allowed values; lists must be non-empty by default."""
    meta = {
        "doc": doc,
        "min": min,
        "positive": positive,
        "choices": tuple(choices) if choices else None,
        "nonempty": nonempty,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (int, float, bool, str, list[T], T | None), else ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(key, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({_type_name(tp)}), got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config field {key}: unsupported type {tp!r}")  # a bug in a config class


def _check(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and meta.get("nonempty", True) and not value:
        raise ConfigError(f"{key}: expected a non-empty list, got []")
    for v in items:
        if v is None:
            continue
        if meta.get("min") is not None and isinstance(v, (int, float)) and v < meta["min"]:
            raise ConfigError(f"{key}: expected values >= {meta['min']:g}, got {value!r}")
        if meta.get("positive") and isinstance(v, (int, float)) and not v > 0:
            raise ConfigError(f"{key}: expected a positive number, got {value!r}")
        if meta.get("choices") and v not in meta["choices"]:
            allowed = ", ".join(map(repr, meta["choices"]))
            raise ConfigError(f"{key}: expected one of {allowed}, got {v!r}")


_C = typing.TypeVar("_C", bound="Config")


@dataclass(frozen=True)
class Config:
    """Base of every experiment config: fields shared by all experiments, and the checks."""

    cpu_threads: int | None = param(
        None, "torch CPU threads for this run (None: torch's default); restored afterwards", min=1
    )
    precision: str = param(
        "fp32",
        "training precision of every fit: 'fp32', or autocast to 'bf16' / 'fp16' with float32 "
        "master weights (bf16 needs AMX or AVX-512 BF16 on a CPU to be fast)",
        choices=("fp32", "bf16", "fp16"),
    )

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            _check(f.name, value, f.metadata)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks across fields (override in a subclass; raise
        [`ConfigError`][hyperlab.experiments.config.ConfigError])."""

    @classmethod
    def keys(cls) -> list[str]:
        """Every field name, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self: _C, overrides: Mapping[str, Any]) -> _C:
        """A copy with ``overrides`` applied; an unknown key is an error listing the valid ones."""
        unknown = [k for k in overrides if k not in self.keys()]
        if unknown:
            raise ConfigError(
                f"{unknown[0]}: unknown config key for {type(self).__name__}; valid keys: "
                f"{', '.join(self.keys())}"
            )
        return dataclasses.replace(self, **dict(overrides))

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON values (for results.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(key, type, meaning) per field, for ``hyperlab show``."""
        hints = typing.get_type_hints(cls)
        return [(f.name, _type_name(hints[f.name]), f.metadata.get("doc", ""))
                for f in dataclasses.fields(cls)]  # fmt: skip


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``key=value`` strings to a dict; values are JSON (numbers, lists, true/false, null) or
    plain strings. Types are checked later, against the config's fields."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out
