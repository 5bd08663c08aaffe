"""Judge a finished run again under the current rules: ``hyperlab rejudge DIR...``.

A record's claims are a function of its config and metrics alone (each experiment's
[`judge`][hyperlab.experiments.base.Experiment.judge]), so a stricter rule reaches every record
without retraining: [`rejudge`][hyperlab.experiments.rejudge.rejudge] recomputes ``claims`` and
``scale`` from ``results.json``,
keeps the metrics untouched, records what it replaced (``rejudged``), and reports every verdict
that changed.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hyperlab.experiments.base import RESULTS_NAME, RunStateError, get_experiment
from hyperlab.experiments.claims import Claim
from hyperlab.experiments.config import Config, ConfigError
from hyperlab.experiments.runner import git_commit
from hyperlab.experiments.scale import paper_scale
from hyperlab.io import atomic_write_json

__all__ = ["Flip", "rejudge"]


@dataclass(frozen=True)
class Flip:
    """A claim whose verdict changed: the old statement and verdict, the new ones."""

    old_claim: str
    old_held: bool | None
    claim: Claim


def _config(exp_name: str, saved: Mapping[str, Any], overrides: Mapping[str, Any]) -> Config:
    exp = get_experiment(exp_name)
    bad = [k for k in overrides if k not in exp.selects]
    if bad:
        raise ConfigError(f"--set {bad[0]}: rejudge may change only what the claims compare "
                          f"with ({', '.join(exp.selects) or 'nothing here'}), not what was "
                          "trained")  # fmt: skip
    known = {k: v for k, v in saved.items() if k in exp.config_class.keys()}
    return exp.config_class().replace({**known, **overrides})


def _match(old: list[Claim], new: list[Claim]) -> list[tuple[Claim | None, Claim]]:
    """Pair each new claim with the old one it replaces: the most similar statements first
    (same paper reference counts extra), each old claim used once; below half similar, none."""

    def score(o: Claim, c: Claim) -> float:
        return difflib.SequenceMatcher(None, o.claim, c.claim).ratio() + 0.1 * (
            o.paper_ref == c.paper_ref
        )

    ranked = sorted(((score(o, c), i, j) for i, o in enumerate(old) for j, c in enumerate(new)),
                    reverse=True)  # fmt: skip
    taken_old: set[int] = set()
    paired: dict[int, Claim] = {}
    for sc, i, j in ranked:
        if sc > 0.5 and i not in taken_old and j not in paired:
            taken_old.add(i)
            paired[j] = old[i]
    return [(paired.get(j), c) for j, c in enumerate(new)]


def rejudge(folder: str | Path, overrides: Mapping[str, Any] | None = None) -> list[Flip]:
    """Recompute the claims and scale of ``folder/results.json`` under the current rules and
    write them back (atomically); return the verdicts that changed."""
    path = Path(folder) / RESULTS_NAME if Path(folder).is_dir() else Path(folder)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunStateError(f"{path}: not a readable results file ({e})") from None
    exp = get_experiment(record["experiment"])
    if exp.judge is None:
        raise RunStateError(f"{path}: {exp.name} has no judge (its claims need the raw run)")
    cfg = _config(exp.name, record.get("config", {}), dict(overrides or {}))
    new = exp.judge(cfg, record["metrics"])
    old = [Claim.from_dict(c) for c in record.get("claims", [])]
    flips = [Flip(o.claim if o else "(new claim)", o.held if o else None, c)
             for o, c in _match(old, new) if o is None or o.held != c.held]  # fmt: skip
    record["rejudged"] = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_commit(),
        "overrides": dict(overrides or {}),
        "previous_claims": [{"claim": c.claim, "held": c.held} for c in old],
    }
    record["config"] = {**record.get("config", {}), **cfg.to_dict()}
    record["claims"] = [c.to_dict() for c in new]
    record["scale"] = paper_scale(cfg, exp.paper_sizes)
    atomic_write_json(path, record, what="the rejudged results")
    return flips
