"""Named experiments reproducing the three papers' figures and tables (``hyperlab list``)."""

from hyperlab.experiments.base import (
    PRESETS,
    REGISTRY,
    Experiment,
    Result,
    RunContext,
    UnknownExperimentError,
    discover,
    format_comparison,
    get_experiment,
    register,
    run_experiment,
)

__all__ = [
    "PRESETS",
    "REGISTRY",
    "Experiment",
    "Result",
    "RunContext",
    "UnknownExperimentError",
    "discover",
    "format_comparison",
    "get_experiment",
    "register",
    "run_experiment",
]
