"""Each modularity experiment's judge, fed hand-made metrics: a case that holds, one that fails,
one that is not judged."""

from __future__ import annotations

import numpy as np
import pytest

from hyperlab.experiments import get_experiment


def sweep_metrics(key: str, rows: dict[str, list[list[float]]], **extra) -> dict:
    """What the sweep records for per-seed ``rows[model][value][seed]`` of score ``key``."""
    m = dict(extra)
    for model, r in rows.items():
        m[f"{model}_{key}"] = [float(np.mean(x)) for x in r]
        m[f"{model}_{key}_std"] = [float(np.std(x)) for x in r]
        m[f"{model}_{key}_per_seed"] = r
    return m


def held(name: str, metrics: dict, preset: str = "full", **overrides) -> dict[str, object]:
    exp = get_experiment(name)
    cfg = exp.config(preset, overrides)
    return {c.claim: c.held for c in exp.judge(cfg, metrics)}


def _synthetic(h_train, e_train, h_test=None, e_test=None, floor=0.5, depths=(2, 3, 4)):
    m = sweep_metrics("mse_train", {"hypernetwork": h_train, "embedding": e_train})
    m.update(sweep_metrics("mse", {"hypernetwork": h_test or h_train,
                                   "embedding": e_test or e_train}))  # fmt: skip
    m["depths"] = list(depths)
    m["task_info"] = {"best_independent_mse": [floor, floor]}
    return m


GOOD_H = [[0.30, 0.31], [0.20, 0.21], [0.10, 0.11]]  # falls with depth
FLAT_E = [[0.40, 0.41], [0.40, 0.41], [0.41, 0.40]]  # below the floor 0.5, flat


def test_fig1a_holds_fails_and_declines():
    ok = held("modularity-synthetic-depth", _synthetic(GOOD_H, FLAT_E))
    assert list(ok.values()) == [True] * 6
    # HN worse than the embedding from k = 3, rising with depth: both fail
    bad_h = [[0.30, 0.31], [0.50, 0.51], [0.60, 0.61]]
    bad = held("modularity-synthetic-depth", _synthetic(bad_h, FLAT_E))
    assert [v for k, v in bad.items() if "<" in k] == [False, False]
    assert [v for k, v in bad.items() if "hypernetwork" in k and "improves" in k] == [False] * 2
    # an embedding above the I-independent floor did not train: "does not improve" not judged
    broken = held("modularity-synthetic-depth", _synthetic(GOOD_H, FLAT_E, floor=0.3))
    assert [v for k, v in broken.items() if "embedding" in k and "does not" in k] == [None] * 2
    # an embedding that improves with depth fails "does not improve"
    better_e = [[0.45, 0.46], [0.30, 0.31], [0.25, 0.26]]
    worse = held("modularity-synthetic-depth", _synthetic([[0.1, 0.11]] * 3, better_e))
    assert [v for k, v in worse.items() if "does not" in k] == [False, False]


def test_fig1a_only_judges_from_k_3():
    h = [[0.50, 0.51], [0.20, 0.21], [0.10, 0.11]]  # worse at k = 2, better from 3
    ok = held("modularity-synthetic-depth", _synthetic(h, FLAT_E))
    assert [v for k, v in ok.items() if "<" in k] == [True, True]


def test_fig1b_embedding_dimension():
    m = _synthetic(GOOD_H, FLAT_E)
    m["dims"] = m.pop("depths")
    ok = held("modularity-synthetic-embedding-dim", m)
    assert len(ok) == 4 and all(ok.values())  # no "HN improves" sentence in Fig. 1b


def _rotation(h, e, values=(2, 3, 4), key="depths"):
    m = sweep_metrics("error_last3", {"hypernetwork": h, "embedding": e})
    m[key] = list(values)
    return m


def test_fig3_rotation_and_chance():
    h = [[0.20, 0.21], [0.10, 0.11], [0.05, 0.06]]
    e = [[0.40, 0.41], [0.40, 0.41], [0.41, 0.40]]
    assert all(held("modularity-rotation", _rotation(h, e)).values())
    at_chance = [[0.91, 0.92]] * 3  # chance error is 11/12 = 0.917: e did not train
    v = held("modularity-rotation", _rotation(h, at_chance))
    assert [x for k, x in v.items() if "does not" in k] == [None]
    one_seed = held("modularity-rotation", _rotation([[0.2], [0.1], [0.05]], [[0.4]] * 3))
    assert set(one_seed.values()) == {None}


def test_app_1_2_to_1_4():
    h = [[0.20, 0.21], [0.20, 0.21]]
    e = [[0.40, 0.41], [0.40, 0.41]]
    assert all(held("modularity-embedding-dim-images", _rotation(h, e, (0, 1), "dims")).values())
    m = sweep_metrics("error", {"hypernetwork": h, "embedding": e}, lrs=[0.01, 0.1])
    assert all(held("modularity-lr-sensitivity", m).values())
    m = sweep_metrics("error", {"hypernetwork": e, "embedding": h}, lrs=[0.01, 0.1])
    assert not any(held("modularity-lr-sensitivity", m).values())
    c = sweep_metrics("mse", {"hypernetwork": [[0.3, 0.31], [0.1, 0.11]], "embedding": e},
                      depths=[2, 3])  # fmt: skip
    assert all(held("modularity-colorization", c).values())


def test_fig2_unique_approximator():
    def m(d12, d1y):
        out = {"inputs": ["mnist"]}
        out["mnist_f1_f2_mse_per_seed"] = [[0.5, x] for x in d12]
        out["mnist_f1_y_mse_per_seed"] = [[0.5, x] for x in d1y]
        out["mnist_ratio_f1_f2_over_f1_y"] = [1.0, float(np.mean(d12) / np.mean(d1y))]
        return out

    assert held("modularity-unique-approximator", m([0.1, 0.11, 0.1], [0.3, 0.31, 0.3])) == {
        "mnist: at the last epoch ||f1 - f2||^2 is significantly smaller than ||f1 - y||^2": True
    }
    assert list(held("modularity-unique-approximator",
                     m([0.3, 0.31, 0.3], [0.1, 0.11, 0.1])).values()) == [False]  # fmt: skip
    assert list(held("modularity-unique-approximator",
                     m([0.1, 0.3, 0.2], [0.2, 0.1, 0.3])).values()) == [None]  # fmt: skip


@pytest.mark.parametrize("name", ["modularity-synthetic-depth", "modularity-rotation"])
def test_a_stricter_noise_rule_flips_a_verdict(name, monkeypatch):
    import hyperlab.experiments.claims as cl

    h = [[0.20, 0.22], [0.18, 0.20], [0.16, 0.18]]
    e = [[0.26, 0.28], [0.26, 0.28], [0.26, 0.28]]
    m = _synthetic(h, e) if "synthetic" in name else _rotation(h, e)
    before = held(name, m)
    monkeypatch.setattr(cl, "NOISE_SE", 6.0)
    after = held(name, m)
    assert any(before[k] is True and after[k] is None for k in before)
