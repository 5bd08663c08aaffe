"""Typed experiment configs: types, ranges, unknown keys, presets and `hyperlab show`."""

from dataclasses import dataclass

import pytest

from hyperlab.cli import main
from hyperlab.experiments import REGISTRY, discover
from hyperlab.experiments.config import Config, ConfigError, param, parse_overrides


@dataclass(frozen=True)
class _Demo(Config):
    epochs: int = param(3, "epochs", min=1)
    lr: float = param(0.1, "learning rate", positive=True)
    depths: list[int] = param([2, 3], "depths", min=2)
    width: int | None = param(None, "width", min=1)
    dataset: str = param("mnist", "data", choices=("mnist", "cifar10"))
    tune: bool = param(False, "search")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": 2.5}, "epochs: expected an integer, got 2.5"),
        ({"epochs": -1}, "epochs: expected values >= 1"),
        ({"epochs": True}, "epochs: expected an integer"),
        ({"lr": 0}, "lr: expected a positive number"),
        ({"lr": "fast"}, "lr: expected a number"),
        ({"depths": []}, "depths: expected a non-empty list"),
        ({"depths": [1]}, "depths: expected values >= 2"),
        ({"depths": [2, "x"]}, r"depths\[1\]: expected an integer"),
        ({"width": 0}, "width: expected values >= 1"),
        ({"dataset": "imagenet"}, "dataset: expected one of 'mnist', 'cifar10'"),
        ({"tune": 1}, "tune: expected true or false"),
        (
            {"nope": 1},
            "nope: unknown config key for _Demo; valid keys: cpu_threads, precision, epochs",
        ),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _Demo().replace(overrides)


def test_values_are_coerced_to_the_field_type():
    cfg = _Demo().replace({"epochs": 4.0, "lr": 1, "width": None, "depths": (2, 5)})
    assert cfg.epochs == 4 and isinstance(cfg.epochs, int)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.depths == [2, 5] and cfg.to_dict()["depths"] == [2, 5]
    with pytest.raises(AttributeError):
        cfg.epochs = 3  # frozen


def test_parse_overrides_reads_json_or_strings():
    assert parse_overrides(["lr=0.1", "depths=[2,3]", "dataset=mnist", "width=null"]) == {
        "lr": 0.1, "depths": [2, 3], "dataset": "mnist", "width": None}  # fmt: skip
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_every_field_of_every_experiment_is_documented_and_every_preset_valid():
    for exp in discover().values():
        for key, _type, doc in exp.config_class.describe():
            assert doc, f"{exp.name}.{key} has no description"
        for preset in exp.presets:
            exp.config(preset)  # raises on a bad preset
    assert len(REGISTRY) >= 14


def test_show_lists_every_key_with_its_presets(capsys):
    assert main(["show", "modularity-rotation"]) == 0
    out = capsys.readouterr().out
    assert "depths (list[int])" in out and "full=[2, 3, 4, 5, 6, 7, 8, 9]" in out
    assert "tiny=[2, 3]" in out and "SGD learning rate" in out


def test_cli_rejects_a_bad_override_before_running(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["run", "modularity-synthetic-depth", "--preset", "tiny", "--out", str(out)]
    assert main([*argv, "--set", "epochs=2.5"]) == 2
    assert "--set epochs: expected an integer, got 2.5" in capsys.readouterr().err
    assert not out.exists()
