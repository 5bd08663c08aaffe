"""A run's scale is computed from its resolved config against the paper's sizes."""

from __future__ import annotations

import pytest

from hyperlab.experiments import get_experiment
from hyperlab.experiments.scale import UNSTATED, paper_scale


def _scale(name: str, **overrides) -> dict:
    exp = get_experiment(name)
    return paper_scale(exp.config("full").replace(overrides), exp.paper_sizes)


def test_every_kind_of_size_is_below_beyond_or_unstated():
    exp = get_experiment("modularity-synthetic-embedding-dim")
    base = exp.config("full")
    sizes = {"seeds": 100, "dims": [1, 2, 3], "d_x": 100, "target": ("sigmoid",),
             "n_conditions": None, "epochs": UNSTATED}  # fmt: skip
    out = paper_scale(base.replace({"seeds": 5, "dims": [1, 2, 9], "d_x": 200,
                                    "n_conditions": 50}), sizes)  # fmt: skip
    assert out["scale"] == "reduced"
    assert out["below"] == ["seeds 5 (the paper: 100)",
                            "dims: 2 of the paper's 3 values (missing [3])",
                            "n_conditions 50 (the paper: all)"]  # fmt: skip
    assert out["beyond"] == ["dims: values beyond the paper's [9]", "d_x 200 (the paper: 100)"]
    assert out["unstated"] == ["epochs 20 (the paper does not say)"]
    at = paper_scale(base.replace({"seeds": 100, "dims": [1, 2, 3]}),
                     {k: v for k, v in sizes.items() if k != "epochs"})  # fmt: skip
    assert at == {"scale": "paper", "below": [], "beyond": [], "unstated": []}
    assert paper_scale(base, {"epochs": UNSTATED})["scale"] == "unknown"


@pytest.mark.parametrize(
    "name", ["modularity-synthetic-depth", "modularity-synthetic-embedding-dim"]
)
def test_a_centred_synthetic_target_is_outside_the_paper(name):
    # the paper's h is a plain sigmoid net: the rescaled, centred target is our variant
    paper_words = _scale(name, seeds=100)
    assert paper_words["scale"] == "paper" and not paper_words["beyond"]
    centred = _scale(name, seeds=100, target="centred")
    assert centred["scale"] == "beyond"
    assert centred["beyond"] == ["target centred (the paper: sigmoid)"]
    assert _scale(name, target="centred")["scale"] == "reduced"  # fewer seeds still says so
