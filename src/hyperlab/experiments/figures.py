"""Figures shared by the experiments: mean ± std curves over seeds, saved as PNG."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hyperlab.experiments.base import RunContext
from hyperlab.plots import epoch_panels, errorbar_curves

__all__ = ["curve_figure", "epoch_figure"]


def curve_figure(
    ctx: RunContext[Any],
    stem: str,
    x: Sequence[Any],
    curves: Mapping[str, list[list[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
    logx: bool = False,
    hlines: Mapping[str, float] | None = None,
) -> str:
    """One curve per entry of ``curves`` (``[value][seed]``; diverged runs left out), mean
    with ±1 std error bars, and labelled reference levels ``hlines``; saved as ``stem.png``;
    returns the file name."""
    clean = {
        k: [[u for u in r if math.isfinite(u)] or [math.nan] for r in rows]
        for k, rows in curves.items()
    }
    levels = {k: v for k, v in (hlines or {}).items() if math.isfinite(v)}
    fig = errorbar_curves(list(x), clean, xlabel=xlabel, ylabel=ylabel, title=title, logy=logy,
                          hlines=levels)  # fmt: skip
    if logx:
        fig.axes[0].set_xscale("log")
    elif all(isinstance(v, int) for v in x):
        fig.axes[0].set_xticks(list(x))
    return ctx.save_figure(fig, stem)


def epoch_figure(
    ctx: RunContext[Any],
    stem: str,
    panels: Mapping[str, Mapping[str, list[list[float]]]],
    *,
    ylabel: str,
    title: str,
    logy: bool = False,
    sharey: bool = True,
) -> str:
    """Training curves (one panel per model, ``panels[model][label]`` = per-seed series over
    epochs, mean drawn); saved as ``stem.png``; returns the file name."""
    fig = epoch_panels({m: dict(c) for m, c in panels.items()}, ylabel=ylabel, title=title,
                       logy=logy, sharey=sharey)  # fmt: skip
    return ctx.save_figure(fig, stem)
