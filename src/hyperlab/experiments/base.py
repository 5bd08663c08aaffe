"""Experiment registry and runner: every paper figure/table is a named, configurable run.

An :class:`Experiment` has a typed config (:mod:`hyperlab.experiments.config`) whose defaults are
the paper's sizes (preset ``full``), and presets ``quick`` (minutes on 2 CPU cores), ``tiny``
(seconds, for tests: the same code path) and optional named variants, each an override of those
defaults. :func:`run_experiment` runs one, writes ``results.json`` atomically (resolved config,
metrics, claims with their evidence, provenance) beside the figures, and returns the record.

:class:`RunContext` is the only way an experiment gets randomness (:meth:`RunContext.seed_for`,
:meth:`RunContext.generator`), its device, and a training run (:meth:`RunContext.fit`).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import os
import pkgutil
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyperlab.experiments.claims import Claim, format_evidence
from hyperlab.experiments.config import Config, ConfigError
from hyperlab.experiments.papers import Paper
from hyperlab.io import atomic_write_json, ensure_writable_dir

PRESETS = ("full", "quick", "tiny")
#: What every "±" in a record and its figures means.
PLUS_MINUS = (
    "mean ± one standard deviation (population, numpy.std) over the repetitions of a setting: "
    "the config's seeds, draws or runs; runs that diverged are left out"
)
RESULTS_NAME = "results.json"


class RunStateError(ValueError):
    """An output folder holds the results of a different run."""


class UnknownExperimentError(KeyError):
    """Raised for an experiment name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class RunContext:
    """What a running experiment gets: its config and where and how to run."""

    name: str
    preset: str
    config: Any  # the experiment's Config subclass
    seed: int
    device: torch.device
    out_dir: Path | None
    data_dir: Path | None = None
    progress: bool = True
    #: where training runs checkpoint: ``out_dir/checkpoints/<config hash>`` (run_experiment)
    checkpoint_root: Path | None = None

    def figure_path(self, stem: str) -> Path:
        """Where to save figure ``stem`` (PNG)."""
        return self._out() / f"{stem}.png"

    def checkpoint_dir(self, *parts: object) -> Path:
        """A per-training-run checkpoint folder under ``checkpoint_root`` (default
        ``out_dir/checkpoints``)."""
        root = self.checkpoint_root or self._out() / "checkpoints"
        return root.joinpath(*(str(p) for p in parts))

    def _out(self) -> Path:
        if self.out_dir is None:
            raise ValueError("RunContext.out_dir: this context has no output folder")
        return self.out_dir

    def seed_for(self, *parts: object) -> int:
        """A 31-bit seed from the run seed and ``parts``; every part counts, stable across runs.

        The one seed-derivation function of the experiments: every stream comes from here.
        """
        key = json.dumps([self.seed, *[str(p) for p in parts]])
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 33

    def generator(self, *parts: object) -> torch.Generator:
        """A CPU generator seeded by :meth:`seed_for` (an independent stream per ``parts``)."""
        return torch.Generator().manual_seed(self.seed_for("gen", *parts))

    def fit(
        self,
        model: nn.Module,
        loss: Callable,
        data: Mapping[str, torch.Tensor],
        *,
        key: Sequence[object],
        epochs: int,
        batch_size: int,
        lr: float,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        lr_decay: float = 1.0,
        seed_key: Sequence[object] | None = None,
        progress: bool = False,
        desc: str | None = None,
        **kwargs: Any,
    ):
        """:func:`hyperlab.train.fit` on this run's device, with the checkpoint folder
        ``checkpoints/<key>`` and the seed :meth:`seed_for` ``(*(seed_key or key))``.

        ``kwargs`` (``evaluate``, ``transform``) pass through. Returns the History.
        """
        from hyperlab.train import TrainConfig, fit

        cfg = TrainConfig(
            epochs=int(epochs),
            batch_size=int(batch_size),
            lr=float(lr),
            optimizer=optimizer,  # type: ignore[arg-type]
            momentum=float(momentum),
            lr_decay=float(lr_decay),
            seed=self.seed_for(*(key if seed_key is None else seed_key)),
            progress=bool(progress and self.progress),
            desc=desc or "-".join(map(str, key)),
        )
        return fit(
            model.to(self.device),
            loss,
            data,
            cfg,
            checkpoint_dir=self.checkpoint_dir(*key),
            device=self.device,
            **kwargs,
        )


@dataclass
class Result:
    """What an experiment returns: metrics, claims, figures, and rows to print.

    ``comparison`` rows are (quantity, paper, ours) strings shown side by side; ``claims`` are
    the paper's statements with the numbers behind them and whether they held on this run.
    """

    metrics: dict[str, Any]
    claims: list[Claim] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    comparison: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: what it reproduces, its typed config, presets and run function.

    ``presets`` maps ``full``, ``quick``, ``tiny`` (and optional named variants) to overrides of
    the config's defaults; ``full`` is usually empty (the defaults are the paper's sizes).
    """

    name: str
    paper: Paper
    reproduces: str
    summary: str
    config_class: type[Config]
    presets: Mapping[str, Mapping[str, Any]]
    run: Callable[[RunContext], Result]
    paper_reference: Mapping[str, Any] = field(default_factory=dict)
    #: what a config costs, in words (training runs, epochs, measured times where known)
    estimate: Callable[[Any], str] | None = None
    #: config fields that only select which independent training runs happen (the number of
    #: seeds, the swept values): left out of the checkpoint hash, so a run with more seeds or
    #: other values reuses the finished runs they share
    selects: tuple[str, ...] = ()

    def config(self, preset: str, overrides: Mapping[str, Any] | None = None) -> Config:
        """The preset's config with ``overrides`` applied, type- and range-checked."""
        if preset not in self.presets:
            raise ConfigError(f"preset: expected one of {sorted(self.presets)}, got {preset!r}")
        base = self.config_class().replace(self.presets[preset])
        try:
            return base.replace(overrides or {})
        except ConfigError as e:
            raise ConfigError(f"--set {e}") from None


REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to the registry (names are unique; every preset must be valid)."""
    missing = [p for p in PRESETS if p not in experiment.presets]
    if missing:
        raise ValueError(f"experiment {experiment.name}: presets lack {missing}")
    if experiment.name in REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} is registered twice")
    for preset in experiment.presets:
        experiment.config(preset)  # a bad preset fails at import, not mid-run
    REGISTRY[experiment.name] = experiment
    return experiment


def discover() -> dict[str, Experiment]:
    """Import every module below :mod:`hyperlab.experiments` so that all experiments register."""
    import hyperlab.experiments as pkg

    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
        importlib.import_module(info.name)
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


def _git_commit() -> dict[str, Any] | None:
    """The commit of the source checkout hyperlab runs from (None outside a git checkout)."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def _machine(dev: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def config_hash(name: str, config: Config, seed: int, selects: Sequence[str] = ()) -> str:
    """Short hash of what a run's trained models depend on: experiment, resolved config (less
    the ``selects`` fields, :attr:`Experiment.selects`), seed and hyperlab's version.
    Checkpoints live under ``checkpoints/<hash>``, so a run never resumes models trained under
    another config or version."""
    cfg = {k: v for k, v in config.to_dict().items() if k not in selects}
    blob = json.dumps([name, cfg, int(seed), _version()], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _check_out_dir(out: Path, name: str, config: Config, seed: int) -> None:
    """Refuse an ``--out`` whose results.json is another run's (experiment, seed or config)."""
    path = out / RESULTS_NAME
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return  # unreadable: it will be replaced
    new = config.to_dict()
    diffs = (
        [f"experiment {old.get('experiment')} -> {name}"] if old.get("experiment") != name else []
    )
    if old.get("seed") != seed:
        diffs.append(f"seed {old.get('seed')} -> {seed}")
    cfg_old = old.get("config") or {}
    diffs += [f"{k} {json.dumps(cfg_old.get(k))} -> {json.dumps(v)}"
              for k, v in new.items() if cfg_old.get(k) != v and k in cfg_old]  # fmt: skip
    diffs += [f"{k} (new key)" for k in new if k not in cfg_old and old.get("experiment") == name]
    if diffs:
        raise RunStateError(
            f"--out {out}: holds the results of a different run ({'; '.join(diffs[:6])}); pass "
            "--overwrite to replace them, or choose another --out"
        )


def _trained_seconds(checkpoints: Sequence[Path]) -> float:
    """Training time already spent in checkpointed runs (the epochs' recorded seconds)."""
    from hyperlab.io import CheckpointError, safe_torch_load

    total = 0.0
    for path in checkpoints:
        try:
            history = safe_torch_load(path).get("history", [])
        except (CheckpointError, OSError):
            continue  # fit() reports an unreadable checkpoint when it gets there
        total += sum(float(r.get("seconds", 0.0)) for r in history)
    return total


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
    command: str | None = None,
    resume: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run an experiment and write ``out_dir/results.json``; return that record.

    Training runs checkpoint under ``out_dir/checkpoints/<config hash>`` (:func:`config_hash`)
    and resume from there (``resume=False`` deletes them first). An ``out_dir`` holding the
    results of another experiment, seed or config is refused unless ``overwrite``. The
    config's ``cpu_threads`` sets torch's CPU threads for the run (restored afterwards).
    ``command`` (the CLI line, when run from the CLI) is recorded for the reproduction record.
    """
    exp = get_experiment(name)
    cfg = exp.config(preset, overrides)
    dev = resolve_device(device)
    out = ensure_writable_dir(out_dir, argument="--out")
    if not overwrite:
        _check_out_dir(out, name, cfg, int(seed))
    digest = config_hash(name, cfg, int(seed), exp.selects)
    ckpt_root = out / "checkpoints" / digest
    if not resume and ckpt_root.exists():
        shutil.rmtree(ckpt_root)
    found = sorted(ckpt_root.rglob("last.pt")) if ckpt_root.exists() else []
    resumed = None
    if found:
        resumed = {"checkpoints": str(ckpt_root), "training_runs": len(found),
                   "trained_seconds": _trained_seconds(found)}  # fmt: skip
        print(f"hyperlab: resuming from {len(found)} training run(s) checkpointed in "
              f"{ckpt_root} (--no-resume starts over)", file=sys.stderr)  # fmt: skip
    ctx = RunContext(
        name=name,
        preset=preset,
        config=cfg,
        seed=int(seed),
        device=dev,
        out_dir=out,
        data_dir=Path(data_dir) if data_dir is not None else None,
        progress=progress,
        checkpoint_root=ckpt_root,
    )
    torch.manual_seed(int(seed))  # library defaults that draw from the global stream
    threads = torch.get_num_threads()
    if dev.type == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(int(cfg.cpu_threads))  # small models: 1 thread avoids spin-waits
    start = time.perf_counter()
    git = _git_commit()  # the code that runs: read before the run, not after it
    try:
        machine = _machine(dev)
        result = exp.run(ctx)
    finally:
        torch.set_num_threads(threads)
    record = {
        "experiment": name,
        "paper": str(exp.paper),
        "arxiv": exp.paper.arxiv,
        "reproduces": exp.reproduces,
        "summary": exp.summary,
        "preset": preset,
        "seed": int(seed),
        "device": str(dev),
        "config": cfg.to_dict(),
        "config_hash": digest,
        "overrides": dict(overrides or {}),
        "resumed_from": resumed,
        "metrics": result.metrics,
        "paper_reference": dict(exp.paper_reference),
        "claims": [c.to_dict() for c in result.claims],
        "comparison": [list(r) for r in result.comparison],
        "plus_minus": PLUS_MINUS,
        "notes": result.notes,
        "figures": result.figures,
        "wall_seconds": round(time.perf_counter() - start, 2),
        "peak_memory_mb": _peak_memory_mb(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "git": git,
        "machine": machine,
        "versions": {
            "hyperlab": _version(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    atomic_write_json(out / RESULTS_NAME, record)  # NaN/inf -> null
    return record


def _peak_memory_mb() -> float | None:
    """This process's peak resident memory so far (None where the OS does not report it)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


def _version() -> str:
    from hyperlab import __version__

    return __version__


def held_label(held: bool | None) -> str:
    """``held`` / ``NOT held`` / ``not judged``."""
    return "not judged" if held is None else ("held" if held else "NOT held")


def format_comparison(record: Mapping[str, Any]) -> str:
    """A plain-text table: quantity | paper | hyperlab, then the claims with their evidence."""
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
    body.append(f"±: {record.get('plus_minus', PLUS_MINUS)}")
    if record["claims"]:
        body.append("")
        body.append("paper's claims, checked on this run:")
        for c in map(Claim.from_dict, record["claims"]):
            body.append(f"  [{held_label(c.held)}] {c.claim} ({c.paper_ref})")
            body.append(f"      evidence: {format_evidence(c.evidence)}")
    for note in record.get("notes", []):
        body.append(f"note: {note}")
    return "\n".join(body)


def describe_experiment(exp: Experiment) -> str:
    """Every config key with its type, value per preset and meaning (``hyperlab show``)."""
    presets = list(exp.presets)
    values = {p: exp.config(p).to_dict() for p in presets}
    lines = [f"{exp.name}: {exp.reproduces} of {exp.paper}", "", textwrap.fill(exp.summary, 98), ""]
    lines.append("presets: " + ", ".join(presets) + " (full = the paper's sizes; tiny = tests)")
    lines.append("")
    for key, tp, doc in exp.config_class.describe():
        lines.append(f"{key} ({tp})")
        lines.append(f"    {doc}")
        shown = [f"{p}={json.dumps(values[p][key])}" for p in presets]
        lines.append("    " + "  ".join(shown))
    return "\n".join(lines)
