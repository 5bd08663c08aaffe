"""Generating-networks experiments on their tiny configs: structure and sanity of the results."""

import json
import math
import warnings
from pathlib import Path

import pytest

from hyperlab.experiments import get_experiment, run_experiment


def _check_files(record, out: Path):
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(record["metrics"]))
    assert record["claims"] and all(c["held"] in (True, False, None) for c in record["claims"])
    assert all(c["evidence"] for c in record["claims"])
    for fig in record["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_registered_with_presets():
    for name in ("generating-toy-gmm", "generating-mnist"):
        exp = get_experiment(name)
        assert set(exp.presets) >= {"full", "quick", "tiny"}
    full = get_experiment("generating-mnist").config("full")
    assert full.noise_batch == 32 and full.images_per_noise == 32
    assert full.lr == 3e-4 and full.noise_dim == 300 and 1e3 in full.lambdas


def test_small_noise_batch_with_large_lambda_warns():
    from hyperlab.experiments.generating.mnist import warn_small_noise_batch

    exp = get_experiment("generating-mnist")
    with pytest.warns(UserWarning, match="noise_batch=8 < 32"):
        warn_small_noise_batch(exp.config("full", {"noise_batch": 8, "lambdas": [1e3, 1e5]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_small_noise_batch(exp.config("full", {"noise_batch": 8, "lambdas": [1e3]}))
        warn_small_noise_batch(exp.config("full"))


def test_toy_gmm_tiny(tmp_path):
    record = run_experiment("generating-toy-gmm", preset="tiny", out_dir=tmp_path, progress=False)
    _check_files(record, tmp_path)
    m = record["metrics"]
    assert 0 <= m["components_visited"] <= m["n_components"] == 10
    assert m["mean_score_on_curve"] > 0


def test_mnist_tiny(tmp_path, data_root):
    record = run_experiment(
        "generating-mnist", preset="tiny", out_dir=tmp_path, data_dir=data_root, progress=False,
        overrides={"download": False},
    )  # fmt: skip
    _check_files(record, tmp_path)
    m = record["metrics"]
    for key in ("accuracy_mean", "accuracy_std", "ensemble_accuracy", "prediction_disagreement"):
        assert 0.0 <= m[key] <= 1.0, key
    assert set(m["per_lambda"]) == {"1000", "100000"}
    a = m["analyses"]
    assert len(a["fgsm"]["single"]) == len(a["fgsm_p"])
    assert a["fgsm"]["single"][0] == 0.0  # p = 0 never fools a correctly classified image
    assert len(a["path_interpolated_accuracy"][0]) == record["config"]["path_points"]
    assert a["path_interpolated_accuracy"][0][0] == a["path_direct_accuracy"][0][0]
    assert len(a["pca_explained_variance_ratio_all"]) == 6
    assert "accuracy_histograms.png" in record["figures"]
    assert len(a["conv0_filter_diversity"]) == 32
    assert 0 <= a["conv0_filter_diversity_min"] <= a["conv0_filter_diversity_median"] <= 1
    # the MNF baseline trained in the same run, through the same statistics (mnf_epochs)
    mnf = m["mnf"]
    assert mnf["training"]["steps"] > 0 and 0.0 <= mnf["accuracy_mean"] <= 1.0
    claims = [c["claim"] for c in record["claims"]]
    assert sum("MNF" in c for c in claims) == 2
    # the training curves: each epoch's mean CE, entropy estimate and batch accuracy, per λ
    assert "training_curves.png" in record["figures"]
    for info in m["training"].values():
        assert len(info["history"]) == record["config"]["epochs"]
        for r in info["history"]:
            assert r["ce"] > 0 and 0 <= r["train_accuracy"] <= 1 and math.isfinite(r["entropy"])
    # a second run resumes the finished training checkpoints instead of retraining
    again = run_experiment(
        "generating-mnist", preset="tiny", out_dir=tmp_path, data_dir=data_root, progress=False,
        overrides={"download": False},
    )  # fmt: skip
    assert again["metrics"]["accuracy_mean"] == m["accuracy_mean"]


def test_mnf_baseline_tiny(tmp_path, data_root):
    record = run_experiment(
        "generating-mnf-baseline", preset="tiny", out_dir=tmp_path, data_dir=data_root,
        progress=False, overrides={"download": False},
    )  # fmt: skip
    _check_files(record, tmp_path)
    m = record["metrics"]
    for key in ("accuracy_mean", "accuracy_std", "ensemble_accuracy", "prediction_disagreement"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["analyses"]["fgsm"]["single"][0] == 0.0


def test_changed_model_settings_do_not_resume_other_checkpoints(tmp_path, data_root):
    kw = dict(preset="tiny", out_dir=tmp_path, data_dir=data_root, progress=False)
    base = {"download": False, "lambdas": [1000.0], "main_lambda": 1000.0}
    run_experiment("generating-mnist", overrides=base, **kw)
    changed = base | {"authors_sum_quirk": True, "target_dtype": "bfloat16"}
    run_experiment("generating-mnist", overrides=changed, overwrite=True, **kw)
    dirs = sorted((tmp_path / "checkpoints").glob("*/lambda_1000-*"))
    assert len(dirs) == 2 and dirs[0].parent != dirs[1].parent  # one folder per config hash
