"""Named experiments reproducing the three papers' figures and tables (``hyperlab list``).

One package per paper (`.modularity`, `.infinite_width`, `.generating`), one
module per figure or table; the machinery they share lives in `.base` (registry,
[`RunContext`][hyperlab.experiments.base.RunContext]), `.runner`
([`run_experiment`][hyperlab.experiments.runner.run_experiment]: the output folder, provenance,
results.json), `.config` (typed configs), `.claims`, `.stats`,
`.evaluate`, `.figures` and `.papers`.
"""

from hyperlab.experiments.base import (
    PRESETS,
    REGISTRY,
    Experiment,
    Result,
    RunContext,
    UnknownExperimentError,
    describe_experiment,
    discover,
    format_comparison,
    get_experiment,
    register,
)
from hyperlab.experiments.claims import Claim
from hyperlab.experiments.config import Config, ConfigError, param
from hyperlab.experiments.papers import GENERATING, INFINITE_WIDTH, MODULARITY, Paper
from hyperlab.experiments.runner import run_experiment

__all__ = [
    "GENERATING",
    "INFINITE_WIDTH",
    "MODULARITY",
    "PRESETS",
    "REGISTRY",
    "Claim",
    "Config",
    "ConfigError",
    "Experiment",
    "Paper",
    "Result",
    "RunContext",
    "UnknownExperimentError",
    "describe_experiment",
    "discover",
    "format_comparison",
    "get_experiment",
    "param",
    "register",
    "run_experiment",
]
