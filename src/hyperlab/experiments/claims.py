"""Claims as data: what a paper states, where, the numbers we measured, and whether it held.

``results.json["claims"]`` is a list of :class:`Claim` records; the printed comparison, the
report and ``REPRODUCTION.md`` read only this list. ``held`` is ``None`` when the run could not
judge the claim (for instance every run of a setting diverged).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Claim", "format_evidence", "judged"]


@dataclass(frozen=True)
class Claim:
    """One of the paper's statements, checked on one run."""

    claim: str
    paper_ref: str
    held: bool | None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.held is not None:
            object.__setattr__(self, "held", bool(self.held))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Claim:
        return cls(d["claim"], d.get("paper_ref", ""), d.get("held"), dict(d.get("evidence", {})))


def judged(held: bool, *numbers: Any) -> bool | None:
    """``held``, or ``None`` when a number it rests on is missing or not finite."""
    for v in numbers:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return None
    return bool(held)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def format_evidence(evidence: Mapping[str, Any]) -> str:
    """``key = value; ...`` with numbers at 4 significant digits."""
    return "; ".join(f"{k} = {_fmt(v)}" for k, v in evidence.items())
