"""Reproducing a figure and reading its record: run an experiment (here Fig. 1a of the
modularity paper at its tiny preset), then read results.json: the resolved config, the scale
(paper or reduced, and why), every claim with its rule, verdict and evidence, the figures, and
the command that reproduces it. The command line does the same: ``hyperlab run NAME --preset
P --out DIR``, ``hyperlab rejudge DIR``, ``hyperlab report results``.

    python examples/reproduce_figure.py --tiny
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hyperlab.experiments import run_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    preset = "tiny" if a.tiny else a.preset
    with tempfile.TemporaryDirectory() as out:
        command = f"hyperlab run modularity-synthetic-depth --preset {preset} --out DIR"
        run_experiment(
            "modularity-synthetic-depth",
            preset=preset,
            out_dir=out,
            progress=False,
            command=command,  # what results.json records as the way to reproduce it
        )
        record = json.loads((Path(out) / "results.json").read_text())
        print("command:", record["command"])
        print("scale:", record["scale"]["scale"], "-", "; ".join(record["scale"]["below"][:3]))
        print("figures:", record["figures"])
        for c in record["claims"]:
            verdict = {True: "held", False: "NOT held", None: "not judged"}[c["held"]]
            why = f" ({c['not_judged']})" if c["not_judged"] else ""
            print(f"[{verdict}] {c['claim']}{why}\n    rule: {c['rule']}")
    print(f"example=reproduce_figure metric=claims value={len(record['claims'])}")


if __name__ == "__main__":
    main()
