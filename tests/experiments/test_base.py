"""The experiment registry and run context."""

import pytest
import torch

from hyperlab.experiments import get_experiment
from hyperlab.experiments.base import RunContext, UnknownExperimentError, parse_overrides


def _ctx(seed: int) -> RunContext:
    return RunContext("x", "tiny", {}, seed, torch.device("cpu"), out_dir=None)


def test_every_part_of_a_generator_key_counts():
    """Regression: keys that share a prefix must still give different streams."""
    ctx = _ctx(0)
    seeds = {ctx.seed_for("init", k, s) for k in range(2, 10) for s in range(5)}
    assert len(seeds) == 40
    draws = {float(torch.rand(1, generator=ctx.generator("init", k))) for k in range(10)}
    assert len(draws) == 10
    assert ctx.seed_for("a", 1) == _ctx(0).seed_for("a", 1) != _ctx(1).seed_for("a", 1)


def test_unknown_names_and_overrides_are_clear_errors():
    with pytest.raises(UnknownExperimentError, match="Did you mean modularity-rotation"):
        get_experiment("modularity-rotaton")
    exp = get_experiment("modularity-synthetic-depth")
    with pytest.raises(ValueError, match="--set nope"):
        exp.config("tiny", {"nope": 1})
    with pytest.raises(ValueError, match=r"--set depths: expected a list like \[2, 3\], got 5"):
        exp.config("tiny", {"depths": 5})
    with pytest.raises(ValueError, match="--set lr: expected a number"):
        exp.config("tiny", {"lr": "fast"})
    assert exp.config("tiny", {"n_conditions": 4, "lr": 1})["n_conditions"] == 4
    with pytest.raises(ValueError, match="preset"):
        exp.config("huge")
    assert parse_overrides(["lr=0.1", "depths=[2,3]", "dataset=mnist"], {"lr": 1.0}) == {
        "lr": 0.1,
        "depths": [2, 3],
        "dataset": "mnist",
    }
