"""What bf16 training does to accuracy: finished runs of one experiment at ``precision=fp32``
and ``precision=bf16`` (several seeds each, e.g. ``hyperlab run generating-mnist --preset quick
--seed S --set precision=P``), grouped by their recorded precision; per metric the mean ± std
over seeds of each (a list-valued metric holds one value per seed of its run, e.g.
``hypernetwork_error_last3_per_seed.0``), the difference bf16 − fp32 and its standard error
(√(s₁²/n₁ + s₂²/n₂)), and the wall time.

    .venv/bin/python benchmarks/precision_accuracy.py runs/bf16/generating-quick-* \\
        --metrics accuracy_mean ensemble_accuracy prediction_disagreement
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any


def _get(metrics: dict[str, Any], path: str) -> list[float]:
    """The value at a dotted path; a list there is one value per seed of that run."""
    value: Any = metrics
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders holding results.json")
    ap.add_argument("--metrics", nargs="+", required=True, help="dotted paths into metrics")
    a = ap.parse_args()
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in a.runs:
        record = json.loads((Path(run) / "results.json").read_text())
        groups.setdefault(record["config"].get("precision", "fp32"), []).append(record)
    if set(groups) != {"fp32", "bf16"}:
        raise SystemExit(f"runs: expected fp32 and bf16 runs, got precisions {sorted(groups)}")
    names = {p: sorted({r["experiment"] for r in rs}) for p, rs in groups.items()}
    seeds = {p: sorted(r["seed"] for r in rs) for p, rs in groups.items()}
    print(f"{names['fp32']}: fp32 runs of seed {seeds['fp32']}, bf16 runs of seed {seeds['bf16']}")
    print("| metric | fp32 | bf16 | bf16 − fp32 (± SE) |\n|---|---|---|---|")
    for path in [*a.metrics, "wall_seconds"]:
        vals = {
            p: [v for r in rs for v in _get(r if path == "wall_seconds" else r["metrics"], path)]
            for p, rs in groups.items()
        }
        (m32, s32), (m16, s16) = _stats(vals["fp32"]), _stats(vals["bf16"])
        se = math.sqrt(s32**2 / len(vals["fp32"]) + s16**2 / len(vals["bf16"]))
        print(f"| {path} | {m32:.4f} ± {s32:.4f} | {m16:.4f} ± {s16:.4f} | "
              f"{m16 - m32:+.4f} (± {se:.4f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
