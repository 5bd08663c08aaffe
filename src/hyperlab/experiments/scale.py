"""Whether a run is at the paper's scale, computed by comparing its resolved config with the
paper's sizes (`paper_sizes`), never by its name.

Every size the paper states is one entry: a number (repetitions, epochs, samples, analysis
sizes: fewer is *below*, more is *beyond*), a list (the swept values: a missing one is below,
an extra one beyond), ``None`` (the whole dataset: a subset is below), or a tuple of choices
(the panels of a figure, e.g. its datasets: a choice outside them is beyond the paper).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hyperlab.experiments.config import Config

__all__ = ["SCALES", "UNSTATED", "paper_scale", "sizes_of"]

#: ``paper``: every size at least the paper's; ``reduced``: some below; ``beyond``: none below,
#: some outside the paper (other datasets, more values); ``unknown``: the paper states none
SCALES = ("paper", "reduced", "beyond", "unknown")


class _Unstated:
    """A size the paper leaves unsaid (e.g. how many runs its error bars average)."""

    def __repr__(self) -> str:
        return "UNSTATED"


#: marks a size the paper does not state: recorded as such, never counted as below or beyond
UNSTATED: Any = _Unstated()


def sizes_of(config_class: type[Config], *keys: str) -> dict[str, Any]:
    """The defaults of ``keys`` (a config's defaults are the paper's sizes where it states
    them): for `paper_sizes`."""
    base = config_class()
    return {k: getattr(base, k) for k in keys}


def _fmt(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def paper_scale(config: Config, sizes: Mapping[str, Any]) -> dict[str, Any]:
    """``{"scale", "below", "beyond", "unstated"}`` of ``config`` against the paper's
    ``sizes``: each entry says the dimension, ours and the paper's."""
    below: list[str] = []
    beyond: list[str] = []
    unstated: list[str] = []
    for key, paper in sizes.items():
        ours = getattr(config, key)
        if paper is UNSTATED:
            unstated.append(f"{key} {_fmt(ours)} (the paper does not say)")
        elif isinstance(paper, tuple):  # the figure's panels: ours must be one of them
            if ours not in paper:
                beyond.append(f"{key} {ours} (the paper: {', '.join(map(str, paper))})")
        elif paper is None:  # the whole dataset
            if ours is not None:
                below.append(f"{key} {_fmt(ours)} (the paper: all)")
        elif isinstance(paper, list):
            missing = [v for v in paper if v not in ours]
            extra = [v for v in ours if v not in paper]
            if missing:
                below.append(f"{key}: {len(paper) - len(missing)} of the paper's {len(paper)} "
                             f"values (missing {missing})")  # fmt: skip
            if extra:
                beyond.append(f"{key}: values beyond the paper's {extra}")
        elif isinstance(paper, (int, float)) and not isinstance(paper, bool):
            if ours is None or ours < paper:
                below.append(f"{key} {_fmt(ours)} (the paper: {_fmt(paper)})")
            elif ours > paper:
                beyond.append(f"{key} {_fmt(ours)} (the paper: {_fmt(paper)})")
        elif ours != paper:
            beyond.append(f"{key} {ours} (the paper: {paper})")
    stated = any(v is not UNSTATED for v in sizes.values())
    scale = "reduced" if below else "beyond" if beyond else "paper" if stated else "unknown"
    return {"scale": scale, "below": below, "beyond": beyond, "unstated": unstated}
