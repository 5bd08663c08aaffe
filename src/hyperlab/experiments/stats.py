"""Statistics over repetitions (seeds, draws), ignoring runs that diverged (NaN)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["finite_lt", "fmt_mean_std", "nanmean", "nanstd"]


def nanmean(values: Sequence[float]) -> float:
    """Mean over the finite values (NaN if there is none)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def nanstd(values: Sequence[float]) -> float:
    """Population standard deviation over the finite values (NaN if none; 0 for one)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return float(np.std(finite)) if finite else math.nan


def fmt_mean_std(mean: float, std: float) -> str:
    """``mean ± std`` at 4 significant digits, or ``diverged`` for NaN."""
    if not math.isfinite(mean):
        return "diverged"
    return f"{mean:.4g} ± {std:.2g}"


def finite_lt(a: float, b: float) -> bool:
    """``a < b`` where a non-finite ``b`` (a diverged run) ranks last and a non-finite ``a``
    never wins."""
    return math.isfinite(a) and (not math.isfinite(b) or a < b)
