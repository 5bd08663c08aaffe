"""Figures saved as PNG files (matplotlib, no display needed), written atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hyperlab.io import atomic_write_bytes  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG and write it atomically; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def errorbar_curves(
    x: Sequence[float],
    curves: dict[str, Sequence[Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
) -> plt.Figure:
    """One line per curve: mean over repetitions with ±1 std error bars.

    ``curves[label][i]`` holds the per-seed values at ``x[i]``.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, values in curves.items():
        mean = np.array([np.mean(v) for v in values])
        std = np.array([np.std(v) for v in values])
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
