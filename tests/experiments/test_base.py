"""The experiment registry, run context and runner."""

import pytest
import torch

from hyperlab.experiments import get_experiment
from hyperlab.experiments.base import RunContext, UnknownExperimentError
from hyperlab.experiments.config import ConfigError


def _ctx(seed: int) -> RunContext:
    return RunContext("x", "tiny", None, seed, torch.device("cpu"), out_dir=None)


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
    with pytest.raises(ConfigError, match="--set nope: unknown config key .* valid keys: "):
        exp.config("tiny", {"nope": 1})
    with pytest.raises(ConfigError, match=r"--set depths: expected a list"):
        exp.config("tiny", {"depths": 5})
    with pytest.raises(ConfigError, match="--set lr: expected a number"):
        exp.config("tiny", {"lr": "fast"})
    cfg = exp.config("tiny", {"n_conditions": 4, "lr": 1})
    assert cfg.n_conditions == 4 and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    with pytest.raises(ConfigError, match="preset"):
        exp.config("huge")


def test_context_without_out_dir_names_it():
    with pytest.raises(ValueError, match="out_dir"):
        _ctx(0).figure_path("x")


def test_fit_runs_on_the_context_device_with_its_seed_and_folder(tmp_path):
    ctx = RunContext("x", "tiny", None, 5, torch.device("cpu"), out_dir=tmp_path)
    model = torch.nn.Linear(2, 1)
    data = {"x": torch.randn(8, 2), "y": torch.randn(8, 1)}

    def loss(m, b):
        return torch.nn.functional.mse_loss(m(b["x"]), b["y"])

    hist = ctx.fit(model, loss, data, key=("a", 1), epochs=2, batch_size=4, lr=0.1)
    assert len(hist) == 2
    assert (tmp_path / "checkpoints" / "a" / "1" / "last.pt").is_file()
    again = torch.nn.Linear(2, 1)
    again.load_state_dict(torch.nn.Linear(2, 1).state_dict())
    # same key and seed: the finished run is resumed, not retrained
    assert len(ctx.fit(again, loss, data, key=("a", 1), epochs=2, batch_size=4, lr=0.1)) == 2
