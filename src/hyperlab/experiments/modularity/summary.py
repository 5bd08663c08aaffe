"""The modularity paper's recurring claims and comparison rows, computed from sweep means."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hyperlab.experiments.claims import Claim, at_every, monotone, no_improvement
from hyperlab.experiments.stats import fmt_mean_std


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
    """Rows 'label=v: I-dependence of f(I) / e(I) at init' (`.sweep.conditioning_at_init`,
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
    """Training-curve panels for [`epoch_figure`][hyperlab.experiments.figures.epoch_figure]:
    ``[model][f"{label}={v}{suffix}"]`` -> per-seed series ``run[key]``, for every ``key ->
    suffix`` of ``series`` (keys of the sweep's ``metrics["curves"]`` runs; a diverged run has
    none and gives an empty series)."""
    return {
        model: {f"{label}={v}{suffix}": [run.get(key, []) for run in runs]
                for v, runs in zip(values, per_value, strict=True)
                for key, suffix in series.items()}
        for model, per_value in metrics["curves"].items()
    }  # fmt: skip


def per_seed(metrics: Mapping, model: str, key: str) -> list[list[float]]:
    """``[value][seed]`` scores of ``model`` (the sweep's ``_per_seed`` table)."""
    rows = metrics.get(f"{model}_{key}_per_seed")
    if rows is None:  # a record without per-seed values: one value per swept value
        rows = [[v] for v in metrics[f"{model}_{key}"]]
    return [[math.nan if v is None else float(v) for v in r] for r in rows]


def comparison_claims(
    values: Sequence[Any],
    metrics: Mapping,
    key: str,
    *,
    what: str,
    score: str,
    paper_ref: str,
    trained: Sequence[bool] | None = None,
    trained_rule: str = "",
    beat_from: Callable[[Any], bool] = lambda v: True,
    beat_label: str | None = None,
    h_improves: bool = True,
    e_flat: bool = True,
) -> list[Claim]:
    """The modularity paper's three sentences on a sweep, judged on the per-seed ``key``
    scores (lower is better): the HN beats the embedding (at every value, or those
    ``beat_from`` keeps); the HN improves as ``what`` grows (over every swept value); the
    embedding does not improve (only where it ``trained`` at every value, by
    ``trained_rule``)."""
    h = per_seed(metrics, "hypernetwork", key)
    e = per_seed(metrics, "embedding", key)
    idx = [i for i, v in enumerate(values) if beat_from(v)]
    beat = at_every([values[i] for i in idx], [h[i] for i in idx], [e[i] for i in idx],
                    names=("hypernetwork", "embedding"))  # fmt: skip
    where = beat_label or f"at every {what}"
    claims = [Claim.of(f"hypernetwork {score} < embedding {score} {where}", paper_ref, beat)]
    if h_improves:
        claims.append(Claim.of(
            f"hypernetwork {score} improves as {what} grows (judged over every swept value)",
            paper_ref, monotone(values, h, name=f"hypernetwork {score}"),
        ))  # fmt: skip
    if e_flat:
        ok = list(trained) if trained is not None else [True] * len(values)
        claims.append(Claim.of(
            f"embedding {score} does not improve as {what} grows (where it trained)",
            paper_ref,
            no_improvement(values, e, trained=ok, name=f"embedding {score}",
                           trained_rule=trained_rule or "assumed"),
        ))  # fmt: skip
    return claims
