"""Figures saved as PNG files (matplotlib, no display needed), written atomically."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation  # noqa: E402

from hyperlab.io import atomic_write_bytes  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG and write it atomically; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue(), what="a figure")


#: One colour per model in every figure; dashed, open markers for the "seen I" variants.
MODEL_STYLES: dict[str, dict[str, object]] = {
    "hypernetwork": {"color": "tab:blue", "marker": "o"},
    "embedding": {"color": "tab:orange", "marker": "s"},
    "hypernetwork (seen I)": {"color": "tab:blue", "marker": "o", "ls": "--", "mfc": "white"},
    "embedding (seen I)": {"color": "tab:orange", "marker": "s", "ls": "--", "mfc": "white"},
    "hypernetwork (train)": {"color": "tab:blue", "marker": "x", "ls": ":"},
    "embedding (train)": {"color": "tab:orange", "marker": "+", "ls": ":"},
}


def readable_log_axis(axis) -> None:
    """Label minor ticks of a log axis when it spans less than two decades (else there are
    only one or two labels)."""
    axis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 1)))


def errorbar_curves(
    x: Sequence[float],
    curves: Mapping[str, Sequence[Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
    spread: str = "seeds",
    hlines: dict[str, float] | None = None,
) -> plt.Figure:
    """One line per curve: mean over repetitions with ±1 std error bars, the legend saying so.

    ``curves[label][i]`` holds the per-repetition values at ``x[i]``; ``spread`` names the
    repetitions (seeds, draws, runs); ``hlines`` are labelled reference levels (grey, dotted).
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    reps = sorted({len(v) for values in curves.values() for v in values})
    connect = dense_sweep(x)
    means = []
    for i, (label, values) in enumerate(curves.items()):
        mean = np.array([np.mean(v) for v in values])
        std = np.array([np.std(v) for v in values])
        means.append(mean)
        style = dict(MODEL_STYLES.get(label, {"marker": "o", "color": f"C{i}"}))
        if not connect:  # sparse swept values: points only, no line suggesting a trend
            style["ls"] = "none"
        ax.errorbar(x, mean, yerr=std if reps != [1] else None, capsize=3, label=label,
                    **style)  # type: ignore[arg-type]  # fmt: skip
    for j, (label, level) in enumerate((hlines or {}).items()):
        ax.axhline(level, color=f"{0.2 + 0.3 * j:.1f}", ls=(0, (1, 2 + j)), lw=1.2, label=label)
        means.append(np.array([level]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    finite = np.concatenate(means) if means else np.array([])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    # a log axis only where the curves span more than a decade (else it shows one tick label)
    if logy and finite.size and finite.max() / finite.min() > 10:
        ax.set_yscale("log")
        readable_log_axis(ax.yaxis)
    ax.grid(alpha=0.3, which="both")
    n = "-".join(map(str, (reps[0], reps[-1]) if len(reps) > 1 else reps))
    singular = spread.removesuffix("s")
    legend = (f"one {singular} (no error bars)" if reps == [1]
              else f"mean ± 1 std over {n} {spread}")  # fmt: skip
    ax.legend(title=legend, fontsize=8, title_fontsize=8)
    return fig


def dense_sweep(x: Sequence[float]) -> bool:
    """Whether lines between swept values show a measured trend: an integer sweep with every
    step 1 (k = 2, 3, 4, ...), or at least four evenly spaced values (linearly or on a log
    scale). Otherwise the values are drawn as points only."""
    v = [float(a) for a in x]
    if len(v) < 2:
        return False
    steps = np.diff(v)
    if all(float(a).is_integer() for a in v) and np.allclose(steps, 1):
        return True
    if len(v) < 4:
        return False
    even = np.allclose(steps, steps[0], rtol=0.05)
    logs = np.diff(np.log(v)) if min(v) > 0 else None
    return bool(even or (logs is not None and np.allclose(logs, logs[0], rtol=0.05)))


def epoch_panels(
    panels: dict[str, dict[str, Sequence[Sequence[float]]]],
    *,
    ylabel: str,
    title: str,
    logy: bool = False,
    sharey: bool = True,
) -> plt.Figure:
    """Training curves, one panel per model (or quantity): ``panels[name][label]`` holds
    per-seed series over epochs (empty for a diverged run, left out); the mean is drawn, one
    colour per label less a trailing " train"/" test", "train" dashed."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=sharey,
                             squeeze=False)  # fmt: skip
    for ax, (model, curves) in zip(axes[0], panels.items(), strict=True):
        colours: dict[str, str] = {}
        for label, runs in curves.items():
            runs = [list(r) for r in runs if len(r)]
            if not runs:
                continue
            n = min(len(r) for r in runs)
            mean = np.nanmean(np.array([r[:n] for r in runs], dtype=float), axis=0)
            group = label.removesuffix(" train").removesuffix(" test")
            colour = colours.setdefault(group, f"C{len(colours) % 10}")
            ls = "--" if label.endswith("train") else "-"
            ax.plot(np.arange(1, n + 1), mean, ls=ls, color=colour, label=label)
        ax.set_title(model)
        ax.set_xlabel("epoch")
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7, ncol=2)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title)
    return fig
