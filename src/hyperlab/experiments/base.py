"""Experiment registry and run context: every paper figure/table is a named, configurable run.

An [`Experiment`][hyperlab.experiments.base.Experiment] has a typed config
([`hyperlab.experiments.config`][hyperlab.experiments.config]) whose defaults are
the paper's sizes (preset ``full``), and presets ``quick`` (minutes on 2 CPU cores), ``tiny``
(seconds, for tests: the same code path) and optional named variants, each an override of those
defaults. [`run_experiment`][hyperlab.experiments.runner.run_experiment] runs one and writes
``results.json`` atomically (resolved config, metrics, claims with their evidence, provenance)
beside the figures.

[`RunContext`][hyperlab.experiments.base.RunContext] is the only way an experiment gets its typed
config, randomness
([`RunContext.seed_for`][hyperlab.experiments.base.RunContext.seed_for],
[`RunContext.generator`][hyperlab.experiments.base.RunContext.generator]), its device, a training
run
([`RunContext.fit`][hyperlab.experiments.base.RunContext.fit];
[`RunContext.fit_tasks`][hyperlab.experiments.base.RunContext.fit_tasks] for a task sequence) and a
saved figure
([`RunContext.save_figure`][hyperlab.experiments.base.RunContext.save_figure]).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import pkgutil
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from matplotlib.figure import Figure
from torch import nn

from hyperlab import continual, train
from hyperlab.experiments.claims import Claim, format_evidence
from hyperlab.experiments.config import Config, ConfigError
from hyperlab.experiments.papers import Paper
from hyperlab.plots import save_figure

#: the config type of a [`RunContext`][hyperlab.experiments.base.RunContext] (each experiment's own
# Config subclass)
C = TypeVar("C", bound=Config, covariant=True)

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


@dataclass(frozen=True)
class RunContext(Generic[C]):
    """What a running experiment gets: its typed config and where and how to run
    (``RunContext[RotationConfig]``: ``ctx.config`` is a ``RotationConfig``)."""

    name: str
    preset: str
    config: C
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

    def save_figure(self, fig: Figure, stem: str) -> str:
        """Save ``fig`` as ``stem.png`` in the output folder (atomically) and close it; returns
        the file name, as `Result.figures` lists it."""
        return save_figure(fig, self.figure_path(stem)).name

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
        """A CPU generator seeded by [`seed_for`][hyperlab.experiments.base.RunContext.seed_for]
        (an independent stream per ``parts``)."""
        return torch.Generator().manual_seed(self.seed_for("gen", *parts))

    def _train_config(self, key: Sequence[object], seed_key: Sequence[object] | None,
                      epochs: int, batch_size: int, lr: float, optimizer: str,
                      momentum: float, lr_decay: float, progress: bool,
                      desc: str | None) -> train.TrainConfig:  # fmt: skip
        return train.TrainConfig(
            epochs=int(epochs),
            batch_size=int(batch_size),
            lr=float(lr),
            optimizer=optimizer,  # type: ignore[arg-type]
            momentum=float(momentum),
            lr_decay=float(lr_decay),
            seed=self.seed_for(*(key if seed_key is None else seed_key)),
            precision=getattr(self.config, "precision", "fp32"),  # a bare context: fp32
            progress=bool(progress and self.progress),
            desc=desc or "-".join(map(str, key)),
        )

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
    ) -> train.History:
        """[`hyperlab.train.fit`][hyperlab.train.loop.fit] on this run's device, with the checkpoint
        folder
        ``checkpoints/<key>`` and the seed
        [`seed_for`][hyperlab.experiments.base.RunContext.seed_for] ``(*(seed_key or key))``.

        ``kwargs`` (``evaluate``, ``transform``) pass through. Returns the History.
        """
        cfg = self._train_config(key, seed_key, epochs, batch_size, lr, optimizer, momentum,
                                 lr_decay, progress, desc)  # fmt: skip
        return train.fit(
            model.to(self.device),
            loss,
            data,
            cfg,
            checkpoint_dir=self.checkpoint_dir(*key),
            device=self.device,
            **kwargs,
        )

    def fit_seeds(
        self,
        models: Sequence[nn.Module],
        loss: Callable,
        datas: Sequence[Mapping[str, torch.Tensor]],
        *,
        keys: Sequence[Sequence[object]],
        seed_keys: Sequence[Sequence[object]] | None = None,
        epochs: int,
        batch_size: int,
        lr: float,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        lr_decay: float = 1.0,
        **kwargs: Any,
    ) -> list[train.History | train.TrainingDiverged]:
        """[`hyperlab.train.fit_seeds`][hyperlab.train.seeds.fit_seeds]: the runs
        [`fit`][hyperlab.experiments.base.RunContext.fit] would make with ``keys[s]``
        (and ``seed_keys[s]``), trained side by side, with the same checkpoint folders (a run
        that trained them one by one resumes them, and the other way round)."""
        seeds: list[Sequence[object] | None] = [*seed_keys] if seed_keys else [None] * len(keys)
        cfgs = [
            self._train_config(
                k, sk, epochs, batch_size, lr, optimizer, momentum, lr_decay, False, None
            )
            for k, sk in zip(keys, seeds, strict=True)
        ]
        return train.fit_seeds(
            [m.to(self.device) for m in models], loss, datas, cfgs,
            checkpoint_dirs=[self.checkpoint_dir(*k) for k in keys], device=self.device,
            **kwargs,
        )  # fmt: skip

    def fit_tasks(
        self,
        learner: continual.Learner,
        train_tasks: Sequence[Mapping[str, torch.Tensor]],
        test_tasks: Sequence[Mapping[str, torch.Tensor]],
        *,
        key: Sequence[object],
        **kwargs: Any,
    ) -> continual.ContinualResult:
        """[`hyperlab.continual.fit_tasks`][hyperlab.continual.fit_tasks] on this run's device,
        checkpointing after
        every task to ``checkpoints/<key>/tasks.pt`` (a rerun resumes after the last finished
        task). ``kwargs`` (``infer``, ``on_task``) pass through."""
        path = self.checkpoint_dir(*key) / "tasks.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        return continual.fit_tasks(learner, train_tasks, test_tasks, checkpoint=path,
                                   device=self.device, **kwargs)  # fmt: skip


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
    run: Callable[[RunContext[Any]], Result]
    #: the paper's claims from a finished run's config and metrics alone (what ``run`` returns
    #: as its claims, and what ``hyperlab rejudge`` recomputes on a record under new rules)
    judge: Callable[[Any, dict[str, Any]], list[Claim]] | None = None
    paper_reference: Mapping[str, Any] = field(default_factory=dict)
    #: what a config costs, in words (training runs, epochs, measured times where known)
    estimate: Callable[[Any], str] | None = None
    #: config fields that do not change a trained model, only which independent training runs
    #: happen (the number of seeds, the swept values) or what the claims compare with: left
    #: out of the checkpoint hash, so a run with more seeds or other values reuses the
    #: finished runs they share
    selects: tuple[str, ...] = ()
    #: whether the run computes on ``--device`` (False: CPU only, whatever is asked; the
    #: record then says cpu)
    uses_device: bool = True
    #: the sizes the paper states, config field -> value
    # ([`hyperlab.experiments.scale`][hyperlab.experiments.scale]):
    #: results.json's ``scale`` compares the resolved config with them
    paper_sizes: Mapping[str, Any] = field(default_factory=dict)

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
    """Import every module below ``hyperlab.experiments`` so that all
    experiments register."""
    pkg = importlib.import_module(__package__ or "hyperlab.experiments")  # this module's package
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
