"""Experiment registry and runner: every paper figure/table is a named, configurable run.

An :class:`Experiment` has presets ``full`` (the paper's sizes), ``quick`` (minutes on 2 CPU
cores) and ``tiny`` (seconds, for tests: same code path). :func:`run_experiment` runs one,
writes ``results.json`` atomically (config, metrics, the paper's reference values and which of
its claims held) beside the figures, and returns the same record.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import json
import math
import pkgutil
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from hyperlab.io import atomic_write_json, ensure_writable_dir

PRESETS = ("full", "quick", "tiny")
RESULTS_NAME = "results.json"


class UnknownExperimentError(KeyError):
    """Raised for an experiment name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class RunContext:
    """What a running experiment gets: its config and where and how to run."""

    name: str
    preset: str
    config: dict[str, Any]
    seed: int
    device: torch.device
    out_dir: Path
    data_dir: Path | None = None
    progress: bool = True

    def figure_path(self, stem: str) -> Path:
        """Where to save figure ``stem`` (PNG)."""
        return self.out_dir / f"{stem}.png"

    def checkpoint_dir(self, *parts: object) -> Path:
        """A per-training-run checkpoint folder under ``out_dir/checkpoints``."""
        return self.out_dir.joinpath("checkpoints", *(str(p) for p in parts))

    def seed_for(self, *parts: object) -> int:
        """A 31-bit seed from the run seed and ``parts``; every part counts, stable across runs."""
        key = json.dumps([self.seed, *[str(p) for p in parts]])
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 33

    def generator(self, *parts: object) -> torch.Generator:
        """A CPU generator seeded by :meth:`seed_for` (an independent stream per ``parts``)."""
        return torch.Generator().manual_seed(self.seed_for("gen", *parts))


@dataclass
class Result:
    """What an experiment returns: metrics, claim checks, figures, and rows to print.

    ``comparison`` rows are (quantity, paper, ours) strings shown side by side; ``claims`` maps
    each of the paper's qualitative claims to whether our run reproduced it.
    """

    metrics: dict[str, Any]
    claims: dict[str, bool] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    comparison: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: what it reproduces, its presets and its run function."""

    name: str
    paper: str
    reproduces: str
    summary: str
    configs: Mapping[str, Mapping[str, Any]]
    run: Callable[[RunContext], Result]
    paper_reference: Mapping[str, Any] = field(default_factory=dict)

    def config(self, preset: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The preset's config with ``overrides`` applied (keys must exist)."""
        if preset not in self.configs:
            raise ValueError(f"preset: expected one of {sorted(self.configs)}, got {preset!r}")
        cfg = dict(self.configs[preset])
        for key, value in (overrides or {}).items():
            if key not in cfg:
                raise ValueError(
                    f"--set {key}: unknown config key for {self.name}; known: {sorted(cfg)}"
                )
            default = cfg[key]
            if default is not None and value is not None and _kind(value) != _kind(default):
                raise ValueError(
                    f"--set {key}: expected a {_kind(default)} like {json.dumps(default)}, "
                    f"got {value!r}"
                )
            cfg[key] = value
        return cfg


def _kind(value: Any) -> str:
    """The JSON kind of a config value, for checking overrides against the defaults."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "mapping"
    return "string" if isinstance(value, str) else type(value).__name__


REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to the registry (names are unique)."""
    missing = [p for p in PRESETS if p not in experiment.configs]
    if missing:
        raise ValueError(f"experiment {experiment.name}: configs lack presets {missing}")
    if experiment.name in REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} is registered twice")
    REGISTRY[experiment.name] = experiment
    return experiment


def discover() -> dict[str, Experiment]:
    """Import every module of :mod:`hyperlab.experiments` so that all experiments register."""
    import hyperlab.experiments as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    return REGISTRY


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; an unknown name lists the close and the known ones."""
    discover()
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownExperimentError(
            f"unknown experiment {name!r}.{hint} Known: {', '.join(sorted(REGISTRY))} "
            "(see `hyperlab list`)"
        )
    return REGISTRY[name]


def parse_overrides(items: list[str] | None, base: Mapping[str, Any]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are JSON (numbers, lists, true/false) or strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key in base and isinstance(base[key], float) and isinstance(value, int):
            value = float(value)
        out[key] = value
    return out


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu`` or ``cuda[:i]``; asking for CUDA without a GPU is a clear error."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"--device: expected 'cpu' or 'cuda', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda: no CUDA GPU is available on this machine; use --device cpu"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected 'cpu' or 'cuda', got {device!r}")
    return dev


def _finite(obj: Any) -> Any:
    """NaN/inf -> None so results.json stays valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def run_experiment(
    name: str,
    *,
    preset: str = "full",
    out_dir: str | Path,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run an experiment and write ``out_dir/results.json``; return that record.

    A config key ``cpu_threads`` sets torch's CPU threads for the run (restored afterwards).
    """
    exp = get_experiment(name)
    cfg = exp.config(preset, overrides)
    dev = resolve_device(device)
    out = ensure_writable_dir(out_dir, argument="--out")
    ctx = RunContext(
        name=name,
        preset=preset,
        config=cfg,
        seed=int(seed),
        device=dev,
        out_dir=out,
        data_dir=Path(data_dir) if data_dir is not None else None,
        progress=progress,
    )
    torch.manual_seed(int(seed))
    threads = torch.get_num_threads()
    if dev.type == "cpu" and cfg.get("cpu_threads"):
        torch.set_num_threads(int(cfg["cpu_threads"]))  # small models: 1 thread avoids spin-waits
    start = time.perf_counter()
    try:
        result = exp.run(ctx)
    finally:
        torch.set_num_threads(threads)
    record = {
        "experiment": name,
        "paper": exp.paper,
        "reproduces": exp.reproduces,
        "summary": exp.summary,
        "preset": preset,
        "seed": int(seed),
        "device": str(dev),
        "config": cfg,
        "metrics": result.metrics,
        "paper_reference": dict(exp.paper_reference),
        "claims": result.claims,
        "comparison": [list(r) for r in result.comparison],
        "notes": result.notes,
        "figures": result.figures,
        "wall_seconds": round(time.perf_counter() - start, 2),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "hyperlab": _version(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    atomic_write_json(out / RESULTS_NAME, _finite(record))
    return record


def _version() -> str:
    from hyperlab import __version__

    return __version__


def format_comparison(record: Mapping[str, Any]) -> str:
    """A plain-text table: quantity | paper | hyperlab, then the claims and where files are."""
    rows = [("quantity", "paper", "hyperlab (this run)")] + [tuple(r) for r in record["comparison"]]
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    body = [
        f"{record['experiment']} — {record['paper']}, {record['reproduces']} "
        f"(preset {record['preset']}, seed {record['seed']})",
        line,
    ]
    for i, r in enumerate(rows):
        body.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            body.append(line)
    if record["claims"]:
        body.append("")
        body.append("paper's claims, checked on this run:")
        for claim, held in record["claims"].items():
            body.append(f"  [{'held' if held else 'NOT held'}] {claim}")
    for note in record.get("notes", []):
        body.append(f"note: {note}")
    return "\n".join(body)


def config_fields(obj: Any) -> dict[str, Any]:
    """A dataclass or mapping as a plain dict (for results.json)."""
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return dict(obj)
