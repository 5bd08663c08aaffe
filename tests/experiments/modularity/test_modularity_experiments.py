"""Modularity-paper experiments on their tiny configs: structure and sanity of the metrics."""

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from hyperlab.cli import main
from hyperlab.data import DataNotFoundError
from hyperlab.experiments import get_experiment, run_experiment

# (experiment, name of the swept metric, score names) for the hypernetwork-vs-embedding sweeps.
SWEEPS = [
    ("modularity-synthetic-depth", "depths", ["mse", "mse_seen_conditions"]),
    ("modularity-synthetic-embedding-dim", "dims", ["mse", "mse_seen_conditions"]),
    ("modularity-rotation", "depths", ["error", "nll"]),
    ("modularity-embedding-dim-images", "dims", ["error", "nll"]),
    ("modularity-lr-sensitivity", "lrs", ["error", "nll"]),
    ("modularity-colorization", "depths", ["mse"]),
]


def _check_record(record, out: Path):
    assert record["claims"] and all(c["held"] in (True, False, None) for c in record["claims"])
    assert all(c["evidence"] for c in record["claims"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(record["metrics"]))
    assert saved["paper_reference"]["claims"]
    for fig in record["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name, axis, scores", SWEEPS, ids=[s[0] for s in SWEEPS])
def test_sweep_experiment_tiny(name, axis, scores, tmp_path, data_root):
    cfg = get_experiment(name).config("tiny").to_dict()
    record = run_experiment(name, preset="tiny", out_dir=tmp_path, data_dir=data_root,
                            progress=False)  # fmt: skip
    m = record["metrics"]
    values = m[axis]
    assert values == cfg[axis]
    spread = []
    for model in ("hypernetwork", "embedding"):
        for score in scores:
            key = f"{model}_{score}"
            mean, std, per_seed = m[key], m[f"{key}_std"], m[f"{key}_per_seed"]
            assert len(mean) == len(std) == len(values)
            assert [len(r) for r in per_seed] == [cfg["seeds"]] * len(values)
            for r, mu, sd in zip(per_seed, mean, std, strict=True):
                assert all(math.isfinite(v) and v >= 0 for v in r)
                assert mu == pytest.approx(sum(r) / len(r))
                assert sd == pytest.approx(statistics.pstdev(r))
                spread.append(sd)
            if score == "error":
                assert all(0 <= v <= 1 for v in mean)
        assert len(m["learning_rates"][model]) == len(values)
    assert any(s > 0 for s in spread), "seeds must differ (data, init and batches)"
    _check_record(record, tmp_path)


def test_synthetic_depth_counts_match_paper_formulas(tmp_path):
    record = run_experiment(
        "modularity-synthetic-depth", preset="tiny", out_dir=tmp_path, progress=False,
        overrides={"seeds": 1, "epochs": 1, "biases": []},
    )  # fmt: skip
    m = record["metrics"]
    # Built models have the parameter counts of the paper's formulas (biases off, Sec. 5).
    for built, formula in zip(m["parameter_counts"], m["paper_formula_counts"], strict=True):
        assert {k: built[k] for k in ("N_f", "N_g", "N_e", "N_q")} == {
            k: formula[k] for k in ("N_f", "N_g", "N_e", "N_q")
        }
    assert m["task_info"]["var_y"][0] > 0


def test_synthetic_depth_records_training_curves_and_baselines(tmp_path):
    record = run_experiment(
        "modularity-synthetic-depth", preset="tiny", out_dir=tmp_path, progress=False,
        overrides={"seeds": 2, "epochs": 3},
    )  # fmt: skip
    m = record["metrics"]
    info = m["task_info"]
    assert len(info["var_y"]) == len(info["best_independent_mse"]) == 2
    # a held-out error of the least-squares fit of y on x: positive, at most about Var y
    pairs = zip(info["best_independent_mse"], info["var_y"], strict=True)
    assert all(0 < b < 1.5 * v for b, v in pairs)
    for model in ("hypernetwork", "embedding"):
        runs = m["curves"][model]
        assert len(runs) == len(m["depths"]) and all(len(r) == 2 for r in runs)
        series = runs[0][0]
        assert len(series["mse_train"]) == len(series["mse_test"]) == 3
        # the last epoch's tracked test MSE is the headline test MSE of that run
        assert series["mse_test"][-1] == pytest.approx(m[f"{model}_mse_per_seed"][0][0])
        assert all(v >= 0 for v in m[f"{model}_mse_train"])
    claims = [c["claim"] for c in record["claims"]]
    assert any("training MSE" in c for c in claims) and any("unseen I" in c for c in claims)
    assert "fig1a_depth_curves.png" in record["figures"]
    deeper = m["conditioning_at_init"]["hypernetwork"]
    assert len(deeper) == len(m["depths"]) and all(c > 0 for c in deeper)


def test_conventions_are_checked_and_change_the_models(tmp_path):
    from hyperlab.experiments.config import ConfigError
    from hyperlab.experiments.modularity.synthetic_depth import SyntheticDepthConfig, builders

    with pytest.raises(ConfigError, match="biases"):
        SyntheticDepthConfig(biases=["f", "x"])
    with pytest.raises(ConfigError, match="init"):
        SyntheticDepthConfig(init="xavier")
    with pytest.raises(ConfigError, match="target"):
        SyntheticDepthConfig(target="tanh")
    gen = torch.Generator().manual_seed(0)
    small = {"d_x": 4, "d_i": 3, "width": 5, "embedding_dim": 6}
    plain = builders(SyntheticDepthConfig(**small, biases=[]))
    full = builders(SyntheticDepthConfig(**small, biases=["f", "e", "g", "q"]))
    hn, hn_b = plain["hypernetwork"](2, gen), full["hypernetwork"](2, gen)
    assert hn_b.g.layout.numel == hn.g.layout.numel + 10 + 1  # g's two bias vectors
    assert not hn.f.head.trains_bias and float(hn.f.head.bias.abs().max()) == 0
    em, em_b = plain["embedding"](2, gen), full["embedding"](2, gen)
    assert sum(p.numel() for p in em_b.parameters()) == (
        sum(p.numel() for p in em.parameters()) + 5 + 6 + 10 + 1
    )


def test_he_trunk_init_keeps_a_deep_f_conditioned_on_i():
    from hyperlab.experiments.modularity.synthetic_depth import SyntheticDepthConfig, builders

    small = {"d_x": 6, "d_i": 30, "width": 64, "embedding_dim": 8}
    cond = torch.randn(256, 30)
    spread = {}
    for trunk_init in ("standard", "he"):
        cfg = SyntheticDepthConfig(**small, trunk_init=trunk_init)
        for name, build in builders(cfg).items():
            gen = torch.Generator().manual_seed(0)
            model = cfg.finish(build(9, gen), gen)
            with torch.no_grad():
                out = model.f.features(cond) if name == "hypernetwork" else model.e(cond)
            spread[trunk_init, name] = float(out.std(0).mean() / out.mean(0).abs().mean())
    for name in ("hypernetwork", "embedding"):  # default init: 9 layers all but erase I
        assert spread["he", name] > 10 * spread["standard", name]
    he = SyntheticDepthConfig(**small, trunk_init="he")
    model = he.finish(builders(he)["hypernetwork"](3, torch.Generator()), torch.Generator())
    biases = [b.detach() for n, b in model.f.trunk.named_parameters() if "bias" in n]
    assert biases and all(float(b.abs().max()) == 0 for b in biases)


def test_rotation_authors_architecture(tmp_path):
    from hyperlab.experiments.modularity.rotation import RotationConfig, hidden_widths

    assert hidden_widths(RotationConfig(), 3) == [50, 50]
    assert hidden_widths(RotationConfig(f_arch="authors"), 3) == [100] * 4  # 5 linear layers


def test_synthetic_held_out_conditions_mode(tmp_path):
    """With a finite set of training conditions, the headline MSE is on unseen ones."""
    record = run_experiment(
        "modularity-synthetic-depth", preset="tiny", out_dir=tmp_path, progress=False,
        overrides={"n_conditions": 10, "seeds": 1, "depths": [2]},
    )  # fmt: skip
    m = record["metrics"]
    for model in ("hypernetwork", "embedding"):
        assert math.isfinite(m[f"{model}_mse"][0])
        assert math.isfinite(m[f"{model}_mse_seen_conditions"][0])


def test_rotation_sizes_follow_the_paper(tmp_path, data_root):
    record = run_experiment(
        "modularity-rotation", preset="tiny", out_dir=tmp_path, data_dir=data_root,
        progress=False, overrides={"seeds": 1, "depths": [3], "width": None},
    )  # fmt: skip
    counts = record["metrics"]["parameter_counts"][0]
    assert record["metrics"]["width"] == 50  # d = 50 for MNIST
    assert counts["N_g"] == 10 * 784 + 10 * 12  # g: 784-10-12 without biases
    # same trunk; f outputs N_g, e outputs E = 10 d + 10 (Sec. 5 and the authors' code)
    assert counts["N_f"] - counts["N_e"] == (50 + 1) * (counts["N_g"] - (10 * 784 + 10))
    assert counts["N_q"] == (784 + 10 * 784 + 10) * 10 + 10 + 10 * 12 + 12
    m = record["metrics"]
    # claims are judged on the mean of the last epochs' test error (here: the one epoch)
    assert m["hypernetwork_error_last3"] == pytest.approx(m["hypernetwork_error"])
    assert len(m["curves"]["embedding"][0][0]["error_test"]) == 1
    # how much f(I) and e(I) depend on I at init (seed 0): positive and finite
    assert all(0 < c < 1e3 for c in m["conditioning_at_init"]["hypernetwork"])
    # one seed and one depth: no noise estimate, no trend: nothing is judged, each says why
    reasons = {c["claim"]: c["not_judged"] for c in record["claims"]}
    assert all(c["held"] is None for c in record["claims"])
    assert [r for k, r in reasons.items() if "improve" in k] == [
        "a trend needs two swept values"
    ] * 2
    assert "one repetition per side" in next(r for k, r in reasons.items() if "<" in k)


def test_tune_picks_each_models_lr_on_validation(tmp_path):
    cfg = get_experiment("modularity-synthetic-depth").config("tiny").to_dict()
    record = run_experiment(
        "modularity-synthetic-depth", preset="tiny", out_dir=tmp_path, progress=False,
        overrides={"tune": True, "depths": [2], "seeds": 1},
    )  # fmt: skip
    m = record["metrics"]
    for model in ("hypernetwork", "embedding"):
        (info,) = m["tuning"][model]
        assert info["lrs"] == cfg["tune_lrs"] and len(info["val_scores"]) == len(info["lrs"])
        finite = [
            (s, lr)
            for s, lr in zip(info["val_scores"], info["lrs"], strict=True)
            if math.isfinite(s)
        ]
        assert info["best_lr"] == min(finite)[1]
        assert m["learning_rates"][model] == [info["best_lr"]]


def test_unique_approximator_tiny(tmp_path, data_root):
    cfg = get_experiment("modularity-unique-approximator").config("tiny").to_dict()
    record = run_experiment(
        "modularity-unique-approximator", preset="tiny", out_dir=tmp_path, data_dir=data_root,
        progress=False,
    )  # fmt: skip
    m = record["metrics"]
    assert m["epochs"] == list(range(1, cfg["epochs"] + 1))
    for space in cfg["inputs"]:
        for key in ("f1_f2", "f1_y", "f2_y"):
            curve = m[f"{space}_{key}_mse"]
            assert len(curve) == cfg["epochs"] and all(v > 0 for v in curve)
            assert [len(r) for r in m[f"{space}_{key}_mse_per_seed"]] == [cfg["epochs"]] * 2
    _check_record(record, tmp_path)
    assert len(record["figures"]) == len(cfg["inputs"])


def test_cifar10_missing_gives_the_data_modules_not_found_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar10.*not found"):
        run_experiment(
            "modularity-rotation", preset="tiny", out_dir=tmp_path / "o",
            data_dir=tmp_path / "empty", progress=False, overrides={"dataset": "cifar10"},
        )  # fmt: skip


def test_cli_dataset_and_tune_flags(tmp_path, capsys):
    argv = ["run", "modularity-rotation", "--preset", "tiny", "--out", str(tmp_path / "o"),
            "--data-dir", str(tmp_path / "empty"), "--no-progress"]  # fmt: skip
    assert main([*argv, "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert "cifar10" in err and "not found" in err
    assert main([*argv, "--dataset", "imagenet"]) == 2
    assert "dataset: expected one of" in capsys.readouterr().err
    bad = ["run", "modularity-unique-approximator", "--preset", "tiny", "--tune",
           "--out", str(tmp_path / "u")]  # fmt: skip
    assert main(bad) == 2
    assert "--tune" in capsys.readouterr().err


def test_rerun_resumes_from_checkpoints_with_identical_results(tmp_path):
    """A second run in the same folder finds every training run finished and reproduces it."""
    kw = dict(preset="tiny", out_dir=tmp_path, progress=False, overrides={"depths": [2]})
    first = run_experiment("modularity-synthetic-depth", **kw)
    assert list((tmp_path / "checkpoints").rglob("last.pt"))
    second = run_experiment("modularity-synthetic-depth", **kw)
    assert (
        first["metrics"]["hypernetwork_mse_per_seed"]
        == second["metrics"]["hypernetwork_mse_per_seed"]
    )


def test_lr_per_value_sets_each_depths_rate_and_is_checked(tmp_path):
    from hyperlab.experiments.config import ConfigError

    kw = {"preset": "tiny", "progress": False}
    record = run_experiment("modularity-synthetic-depth", out_dir=tmp_path / "a", **kw,
                            overrides={"seeds": 1, "lr_per_value": [0.001, 0.02]})  # fmt: skip
    assert record["metrics"]["learning_rates"]["hypernetwork"] == [0.001, 0.02]
    assert record["metrics"]["learning_rates"]["embedding"] == [0.001, 0.02]
    with pytest.raises(ConfigError, match="lr_per_value: expected 2"):
        run_experiment("modularity-synthetic-depth", out_dir=tmp_path / "b", **kw,
                       overrides={"lr_per_value": [0.01]})  # fmt: skip
    with pytest.raises(ConfigError, match="lr_per_value: not used"):
        run_experiment("modularity-synthetic-depth", out_dir=tmp_path / "c", **kw,
                       overrides={"lr_per_value": [0.01, 0.01], "tune": True})  # fmt: skip


def test_more_seeds_or_other_depths_reuse_the_finished_runs(tmp_path):
    kw = {"preset": "tiny", "out_dir": tmp_path, "progress": False}
    first = run_experiment("modularity-synthetic-depth", overrides={"seeds": 1}, **kw)
    assert first["resumed_from"] is None
    more = run_experiment("modularity-synthetic-depth", overrides={"seeds": 2, "depths": [2]},
                          overwrite=True, **kw)  # fmt: skip
    # seed 0 at k = 2 (both models) was trained by the first run and is reused, not retrained
    assert more["config_hash"] == first["config_hash"]
    assert more["resumed_from"]["training_runs"] == 2 * len(first["config"]["depths"])
    m0, m1 = first["metrics"], more["metrics"]
    assert m1["hypernetwork_mse_per_seed"][0][0] == m0["hypernetwork_mse_per_seed"][0][0]
    # anything that changes what is trained gets its own checkpoints
    other = run_experiment("modularity-synthetic-depth", overrides={"seeds": 1, "lr": 0.02},
                           overwrite=True, **kw)  # fmt: skip
    assert other["config_hash"] != first["config_hash"] and other["resumed_from"] is None


def test_a_diverged_run_is_recorded_not_fatal(tmp_path):
    record = run_experiment("modularity-synthetic-depth", preset="tiny", out_dir=tmp_path,
                            progress=False, overrides={"seeds": 1, "lr": 1e6})  # fmt: skip
    m = record["metrics"]
    assert all(math.isnan(v) for v in m["hypernetwork_mse"])  # diverged: NaN, not an error
    assert all(run == {} for runs in m["curves"]["hypernetwork"] for run in runs)
    assert "fig1a_depth_curves.png" in record["figures"]
