"""Infinite-width-paper experiments on their tiny configs: structure and sanity of the records."""

import json
import math

import pytest

from hyperlab.experiments import get_experiment, run_experiment

NAMES = [
    "infinite-width-kernel-convergence",
    "infinite-width-taylor-terms",
    "infinite-width-representation",
    "infinite-width-dynamics",
]


@pytest.mark.parametrize("name", NAMES)
def test_tiny_preset_runs_and_records(name, tmp_path, data_root):
    exp = get_experiment(name)
    assert exp.paper.title == "On Infinite-Width Hypernetworks" and exp.paper.arxiv
    record = run_experiment(
        name, preset="tiny", out_dir=tmp_path, data_dir=data_root, progress=False
    )
    assert record["claims"] and all(c["held"] in (True, False, None) for c in record["claims"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(record["metrics"]))
    assert saved["paper_reference"]["claims"]
    assert record["comparison"]
    for fig in record["figures"]:
        assert (tmp_path / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kernel_convergence_metrics_shape(tmp_path):
    record = run_experiment(
        "infinite-width-kernel-convergence", preset="tiny", out_dir=tmp_path, progress=False
    )
    m = record["metrics"]
    var = m["variance_of_probe_entry"]
    assert len(var) == len(m["f_widths"]) and len(var[0]) == len(m["g_widths"])
    assert all(v > 0 for row in var for v in row)  # independent draws really differ
    assert len(m["analytic_curve"]) == len(m["thetas"])


def test_taylor_first_order_is_width_independent(tmp_path):
    record = run_experiment(
        "infinite-width-taylor-terms", preset="tiny", out_dir=tmp_path, progress=False
    )
    stats = record["metrics"]["statistics"]
    slopes = {h: {r: st["slope"] for r, st in by_r.items()} for h, by_r in stats.items()}
    # K^(1) is the empirical NTK: O(1) in the width of f (3 draws: a loose check)
    assert abs(slopes["1"]["1"]) < 0.5, slopes
    # r > H terms decay with the width
    assert slopes["1"]["2"] < -0.5 and slopes["1"]["3"] < slopes["1"]["2"], slopes
    for by_r in stats.values():
        for st in by_r.values():
            lo, hi = st["interval_95"]
            assert lo <= st["slope"] <= hi  # the bootstrap interval brackets the estimate
    assert record["metrics"]["fit_widths"] == [128, 512]


def test_representation_mse_is_sane(tmp_path, data_root):
    record = run_experiment(
        "infinite-width-representation",
        preset="tiny",
        out_dir=tmp_path,
        data_dir=data_root,
        progress=False,
    )
    m = record["metrics"]
    mse = m["mse"]
    assert set(mse) == {"s_weighted", "released"}
    for by_task in mse.values():
        for by_kernel in by_task.values():
            for values in by_kernel.values():
                assert all(0.0 < v < 0.2 and math.isfinite(v) for v in values)
    # Table 1 in one place per task, the trained HN row aligned with n_train
    runs = record["config"]["hn_runs"]
    for task in ("representation", "inpainting"):
        tab = m[task]
        ns = tab["n_train"]
        assert ns == m["ns"]
        assert tab["hyperkernel_mse"] == mse[tab["kernel_variant"]][task]["HK"]
        assert tab["nngp_mse"] == mse[tab["kernel_variant"]][task]["NNGP"]
        for key in ("hypernetwork_mse", "hypernetwork_mse_std", "hypernetwork_train_mse"):
            assert len(tab[key]) == len(ns), key
        assert all(len(r) == runs for r in tab["hypernetwork_mse_runs"])
        assert all(len(r) == runs for r in tab["hypernetwork_diverged"])
        # tiny: a few images and pixels, so test MSE is only finite (an overfit HN can
        # extrapolate wildly to unseen pixels); the training fit must be real
        assert all(0.0 < v and math.isfinite(v) for v in tab["hypernetwork_mse"])
        assert all(0.0 <= v < 0.2 for v in tab["hypernetwork_train_mse"])
        assert not any(d for runs_n in tab["hypernetwork_diverged"] for d in runs_n)
        assert all(v >= 0.0 for v in tab["hypernetwork_mse_std"])
        assert tab["paper"]["hypernetwork_mse"][-1] < 0.066  # "0.49" read as 0.049
    rows = [r for r in record["comparison"] if " HN " in r[0]]
    assert len(rows) == 2 * len(m["ns"])
    assert any("HN" in c["claim"] for c in record["claims"])


def test_dynamics_records_every_epoch(tmp_path, data_root):
    record = run_experiment(
        "infinite-width-dynamics",
        preset="tiny",
        out_dir=tmp_path,
        data_dir=data_root,
        progress=False,
        overrides={"epochs": 2, "g_depths": [3], "g_widths": [10]},
    )
    m = record["metrics"]
    runs = m["accuracy"]["3"]["10"]
    assert len(runs) == 1 and len(runs[0]) == 3  # initial + one value per epoch
    assert all(0.0 <= a <= 1.0 for a in runs[0])
    assert m["diverged_at_epoch"]["3"]["10"] == [None]
    assert m["diverged_runs"]["3"]["10"] == 0
    assert m["stayed_at_chance"]["3"]["10"] == [runs[0][-1] < 2 / 12]
    # one width: no widest-vs-narrowest claims (they would compare a width with itself)
    assert not [c for c in record["claims"] if "narrowest" in c["claim"]]
    assert math.isclose(m["chance"], 1 / 12)


def test_dynamics_divergence_is_recorded_not_raised(tmp_path, data_root):
    """An absurd learning rate diverges: recorded as NaN with its epoch, and claims still bools."""
    record = run_experiment(
        "infinite-width-dynamics",
        preset="tiny",
        out_dir=tmp_path,
        data_dir=data_root,
        progress=False,
        overrides={
            "epochs": 2,
            "g_depths": [3, 6],
            "g_widths": [10],
            "lr": 1e6,
            "n_train": 50,
            "n_test": 20,
            "batch_size": 25,
        },
    )
    m = record["metrics"]
    for dep in ("3", "6"):
        (curve,) = m["accuracy"][dep]["10"]
        (epoch,) = m["diverged_at_epoch"][dep]["10"]
        assert epoch in (1, 2), m["diverged_at_epoch"]
        assert len(curve) == 3 and math.isfinite(curve[0])
        assert all(math.isnan(a) for a in curve[epoch:])
        assert m["diverged_runs"][dep]["10"] == 1
    assert all(c["held"] in (True, False, None) for c in record["claims"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"]["diverged_at_epoch"] == m["diverged_at_epoch"]


def test_representation_without_hn_runs_keeps_the_kernel_results(tmp_path, data_root):
    """hn_runs=0 skips the HN row: kernel results are recorded, HN claims are not judged."""
    record = run_experiment(
        "infinite-width-representation", preset="tiny", out_dir=tmp_path, data_dir=data_root,
        progress=False, overrides={"hn_runs": 0, "tasks": ["representation"]},
    )  # fmt: skip
    tab = record["metrics"]["representation"]
    assert all(math.isfinite(v) for v in tab["hyperkernel_mse"])
    assert all(math.isnan(v) for v in tab["hypernetwork_mse"])
    hn = [c for c in record["claims"] if "HN" in c["claim"]]
    assert hn and all(c["held"] is None for c in hn)
    assert json.loads((tmp_path / "results.json").read_text())["claims"]


def test_fig2_models_follow_the_released_code():
    """authors: f = d-200-200-200-100-N_g (default init), g ReLU after layer 1 only."""
    import torch

    from hyperlab.experiments.infinite_width.dynamics import DynamicsConfig, build_model

    gen = torch.Generator().manual_seed(0)
    m = build_model(DynamicsConfig(), 784, 3, 10, gen)
    n_g = 784 * 10 + 10 * 10 + 10 * 12
    assert m.g.layout.numel == n_g and m.g.hidden_activations == [True, False]
    widths = [784, 200, 200, 200, 100]
    trunk = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert sum(p.numel() for p in m.f.parameters()) == trunk + 100 * n_g + n_g
    assert m.f.init == "standard"
    relu = build_model(DynamicsConfig(model="authors_relu"), 784, 3, 10, gen)
    assert relu.g.hidden_activations == [True, True]
    ours = build_model(DynamicsConfig(model="hyperlab"), 784, 3, 10, gen)
    assert ours.f.init == "hyperfan" and ours.f.head.in_features == 200


def test_representation_cg_solver_matches_dense(tmp_path, data_root):
    """solver='cg' (matrix-free PCG) gives the dense Cholesky path's Table 1 to solver tolerance,
    and records its iterations and the run's peak memory."""
    common = {"hn_runs": 0, "tasks": ["representation"], "variants": ["s_weighted"]}
    runs = {
        solver: run_experiment(
            "infinite-width-representation",
            preset="tiny",
            out_dir=tmp_path / solver,
            data_dir=data_root,
            progress=False,
            overrides={**common, "solver": solver, "cg_tol": 1e-10, "cg_rank": 5},
        )  # fmt: skip
        for solver in ("dense", "cg")
    }
    dense, cg = (runs[s]["metrics"]["representation"] for s in ("dense", "cg"))
    for key in ("hyperkernel_mse", "nngp_mse"):
        for a, b in zip(dense[key], cg[key], strict=True):
            assert abs(a - b) <= 1e-7 * abs(a)
    solves = runs["cg"]["metrics"]["solves"]
    assert solves and all(s["iterations"] > 0 for s in solves)
    assert runs["cg"]["peak_memory_mb"] > 0


def test_representation_refuses_a_cg_solve_over_the_free_memory_naming_its_settings(
    tmp_path, data_root, monkeypatch
):
    import hyperlab.kernels.iterative as it
    from hyperlab.experiments.config import ConfigError

    monkeypatch.setattr(it, "available_memory_bytes", lambda device="cpu": 2**30)
    with pytest.raises(ConfigError, match=r"cg_rank / cg_cache_gb: .*N=12,000.*rank=3000"):
        run_experiment(
            "infinite-width-representation", preset="tiny", out_dir=tmp_path,
            data_dir=data_root, progress=False,
            overrides={"hn_runs": 0, "tasks": ["representation"], "solver": "cg",
                       "ns": [3000], "cg_rank": 3000, "cg_cache_gb": 6.0},
        )  # fmt: skip
    assert not (tmp_path / "results.json").exists()
