"""The experiment registry, run context and runner."""

import json

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


def test_out_dir_of_another_config_is_refused_unless_overwrite(tmp_path, capsys):
    from hyperlab.cli import main

    out = tmp_path / "o"
    argv = ["run", "modularity-synthetic-depth", "--preset", "tiny", "--out", str(out),
            "--no-progress", "--set", "depths=[2]", "seeds=1"]  # fmt: skip
    assert main(argv) == 0
    first = json.loads((out / "results.json").read_text())
    assert first["resumed_from"] is None and len(first["config_hash"]) == 12
    # the same run again resumes its finished checkpoints and says so
    capsys.readouterr()
    assert main(argv) == 0
    assert "resuming from 2 training run(s)" in capsys.readouterr().err
    again = json.loads((out / "results.json").read_text())
    assert again["resumed_from"]["training_runs"] == 2
    assert again["resumed_from"]["trained_seconds"] > 0
    assert again["metrics"]["hypernetwork_mse"] == first["metrics"]["hypernetwork_mse"]
    # another config into the same folder is refused, naming what differs
    assert main([*argv, "n_conditions=10"]) == 2
    err = capsys.readouterr().err
    assert "holds the results of a different run (n_conditions null -> 10)" in err
    assert "--overwrite" in err
    assert json.loads((out / "results.json").read_text()) == again  # nothing was lost
    # --overwrite trains the new config afresh: its checkpoints live under another hash
    assert main([*argv, "n_conditions=10", "--overwrite"]) == 0
    third = json.loads((out / "results.json").read_text())
    assert third["config_hash"] != first["config_hash"] and third["resumed_from"] is None
    assert third["metrics"]["hypernetwork_mse"] != first["metrics"]["hypernetwork_mse"]
    # --no-resume deletes this config's checkpoints and starts over
    assert main([*argv, "n_conditions=10", "--no-resume"]) == 0
    assert json.loads((out / "results.json").read_text())["resumed_from"] is None


def test_a_broken_checkpoint_is_one_line_naming_the_way_out(tmp_path, capsys):
    from hyperlab.cli import main

    out = tmp_path / "o"
    argv = ["run", "modularity-synthetic-depth", "--preset", "tiny", "--out", str(out),
            "--no-progress", "--set", "depths=[2]", "seeds=1"]  # fmt: skip
    assert main(argv) == 0
    ckpt = next(out.rglob("last.pt"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    capsys.readouterr()
    assert main(argv) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert (
        len(errors) == 1
        and errors[0].startswith("hyperlab: error: ")
        and "--no-resume" in errors[0]
    )
    assert main([*argv, "--no-resume"]) == 0


def test_stale_temp_files_are_removed_on_the_next_write(tmp_path):
    import os
    import time

    from hyperlab.io import atomic_write_text

    target = tmp_path / "results.json"
    stale = tmp_path / ".results.json.abc123.tmp"
    stale.write_text("half a file")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".results.json.def456.tmp"  # a concurrent writer's: too new to touch
    fresh.write_text("in progress")
    atomic_write_text(target, "{}")
    assert target.read_text() == "{}" and not stale.exists() and fresh.exists()


def test_the_config_precision_reaches_fit(tmp_path, monkeypatch):
    """--set precision=bf16 trains every fit of the run under bf16 autocast."""
    import hyperlab.train
    from hyperlab.experiments import run_experiment

    seen = []
    real = hyperlab.train.fit

    def spy(model, loss, data, config, **kw):
        seen.append(config.precision)
        return real(model, loss, data, config, **kw)

    monkeypatch.setattr(hyperlab.train, "fit", spy)
    run_experiment("modularity-synthetic-depth", preset="tiny", out_dir=tmp_path,
                   overrides={"precision": "bf16", "seeds": 1}, progress=False)  # fmt: skip
    assert seen and set(seen) == {"bf16"}
