"""The modularity paper's recurring claims and comparison rows, computed from sweep means."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hyperlab.experiments.claims import Claim, judged
from hyperlab.experiments.stats import finite_lt, fmt_mean_std


def pair_rows(label: str, values: Sequence[Any], metrics: Mapping, score: str) -> list:
    """Comparison rows 'label=v: score hyper / emb' (the paper gives no numbers)."""
    h, e = metrics[f"hypernetwork_{score}"], metrics[f"embedding_{score}"]
    hs, es = metrics[f"hypernetwork_{score}_std"], metrics[f"embedding_{score}_std"]
    return [
        (
            f"{label}={v}: {score} hyper / emb",
            "qualitative (no numbers)",
            f"{fmt_mean_std(h[i], hs[i])} / {fmt_mean_std(e[i], es[i])}",
        )
        for i, v in enumerate(values)
    ]


def conditioning_rows(label: str, values: Sequence[Any], metrics: Mapping) -> list:
    """Rows 'label=v: I-dependence of f(I) / e(I) at init' (:func:`.sweep.conditioning_at_init`,
    seed 0): near 0, the model starts (nearly) blind to I."""
    c = metrics.get("conditioning_at_init", {})
    h, e = c.get("hypernetwork"), c.get("embedding")
    if not h or not e:
        return []
    return [(f"{label}={v}: I-dependence at init, f(I) / e(I)", "not stated",
             f"{h[i]:.2g} / {e[i]:.2g}") for i, v in enumerate(values)]  # fmt: skip


def curve_panels(
    label: str, values: Sequence[Any], metrics: Mapping, series: Mapping[str, str]
) -> dict[str, dict[str, list]]:
    """Training-curve panels for :func:`~hyperlab.experiments.figures.epoch_figure`:
    ``[model][f"{label}={v}{suffix}"]`` -> per-seed series ``run[key]``, for every ``key ->
    suffix`` of ``series`` (keys of the sweep's ``metrics["curves"]`` runs; a diverged run has
    none and gives an empty series)."""
    return {
        model: {f"{label}={v}{suffix}": [run.get(key, []) for run in runs]
                for v, runs in zip(values, per_value, strict=True)
                for key, suffix in series.items()}
        for model, per_value in metrics["curves"].items()
    }  # fmt: skip


def comparison_claims(
    values: Sequence[Any],
    h: Sequence[float],
    e: Sequence[float],
    *,
    what: str,
    score: str,
    paper_ref: str,
    beat_from: Callable[[Any], bool] = lambda v: True,
    beat_label: str | None = None,
    h_improves: bool = True,
    e_flat: bool = True,
) -> list[Claim]:
    """HN beats the embedding; the HN improves with ``what``; the embedding does not."""
    claims = []
    idx = [i for i, v in enumerate(values) if beat_from(v)]
    claims.append(Claim(
        f"hypernetwork {score} < embedding {score} {beat_label or f'at every {what}'}", paper_ref,
        bool(idx) and all(finite_lt(h[i], e[i]) for i in idx),
        {"values": [values[i] for i in idx], "hypernetwork": [h[i] for i in idx],
         "embedding": [e[i] for i in idx]},
    ))  # fmt: skip
    trend = len(values) > 1  # a trend needs two values: one value is not judged (None)
    if h_improves:
        claims.append(Claim(
            f"hypernetwork {score} improves as {what} grows (largest < smallest)", paper_ref,
            finite_lt(h[-1], h[0]) if trend else None,
            {"smallest": values[0], "at_smallest": h[0], "largest": values[-1],
             "at_largest": h[-1]},
        ))  # fmt: skip
    if e_flat:
        claims.append(Claim(
            f"embedding {score} does not improve as {what} grows (largest >= 0.9 x smallest)",
            paper_ref,
            judged(math.isfinite(e[-1]) and math.isfinite(e[0]) and e[-1] >= 0.9 * e[0],
                   e[0], e[-1]) if trend else None,
            {"smallest": values[0], "at_smallest": e[0], "largest": values[-1],
             "at_largest": e[-1]},
        ))  # fmt: skip
    return claims
