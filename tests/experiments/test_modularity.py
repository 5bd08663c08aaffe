"""Modularity-paper experiments on their tiny configs: structure and sanity of the metrics."""

import json
import math

from hyperlab.experiments import get_experiment, run_experiment


def test_synthetic_depth_tiny(tmp_path):
    exp = get_experiment("modularity-synthetic-depth")
    cfg = exp.configs["tiny"]
    record = run_experiment(
        "modularity-synthetic-depth", preset="tiny", out_dir=tmp_path, progress=False
    )
    m = record["metrics"]
    assert m["depths"] == cfg["depths"]
    for key in ("hypernetwork_mse", "embedding_mse"):
        assert len(m[key]) == len(cfg["depths"])
        assert all(math.isfinite(v) and v > 0 for v in m[key])
        per_seed = m[f"{key}_per_seed"]
        assert [len(r) for r in per_seed] == [cfg["seeds"]] * len(cfg["depths"])
        assert all(abs(sum(r) / len(r) - v) < 1e-9 for r, v in zip(per_seed, m[key], strict=True))
    # Built models have the parameter counts of the paper's formulas (biases off, Sec. 5).
    for built, formula in zip(m["parameter_counts"], m["paper_formula_counts"], strict=True):
        assert {k: built[k] for k in ("N_f", "N_g", "N_e", "N_q")} == {
            k: formula[k] for k in ("N_f", "N_g", "N_e", "N_q")
        }
    assert all(isinstance(v, bool) for v in record["claims"].values())
    assert json.loads((tmp_path / "results.json").read_text())["metrics"] == m


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
