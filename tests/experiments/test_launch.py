"""``--launcher submitit``: the sweep's cells as jobs (submitit's local executor here), merged
into the record the one-process run writes."""

from __future__ import annotations

import json

import pytest

from hyperlab.cli import main
from hyperlab.experiments.launch import cells

pytest.importorskip("submitit", reason="submitit is the hyperlab[slurm] extra")

ARGS = ["--preset", "tiny", "--no-progress", "--set", "depths=[2,3]", "seeds=2", "epochs=1"]


def test_cells_merge_into_the_one_process_record(tmp_path, data_root):
    one = tmp_path / "one"
    assert main(["run", "modularity-synthetic-depth", "--out", str(one), *ARGS]) == 0
    many = tmp_path / "many"
    argv = [
        "run",
        "modularity-synthetic-depth",
        "--out",
        str(many),
        *ARGS,
        "--launcher",
        "submitit",
        "--launcher-set",
        "cluster=local",
        "timeout_min=10",
    ]
    assert main(argv) == 0
    a = json.loads((one / "results.json").read_text())
    b = json.loads((many / "results.json").read_text())
    # the same trained models and scores (a least-squares floor differs in its 16th digit)
    assert json.loads(
        json.dumps(a["metrics"]), parse_float=lambda x: round(float(x), 12)
    ) == json.loads(json.dumps(b["metrics"]), parse_float=lambda x: round(float(x), 12))
    assert [c["held"] for c in a["claims"]] == [c["held"] for c in b["claims"]]
    assert b["resumed_from"]["training_runs"] == 2 * 2 * 2  # every model trained by a cell
    assert sorted(p.name for p in (many / "cells").iterdir()) == ["depths-2", "depths-3"]
    assert all((many / "cells" / c / "results.json").is_file() for c in ("depths-2", "depths-3"))


def test_launcher_options_are_checked(tmp_path, capsys):
    base = ["run", "modularity-synthetic-depth", "--out", str(tmp_path / "o"), *ARGS]
    assert main([*base, "--launcher", "submitit", "--launcher-set", "timeout_min=0"]) == 2
    assert "--launcher-set timeout_min: expected values >= 1" in capsys.readouterr().err
    assert main([*base, "--launcher", "submitit", "--launcher-set", "nodes=3"]) == 2
    assert "--launcher-set nodes: unknown config key" in capsys.readouterr().err
    assert main([*base, "--launcher-set", "cluster=local"]) == 2
    assert "needs --launcher submitit" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cells_split_the_first_swept_field():
    assert cells("modularity-rotation", "tiny", {}) == ("depths", [2, 3])
    assert cells("infinite-width-dynamics", "tiny", {}) == ("g_depths", [3, 6])
    assert cells("generating-toy-gmm", "tiny", {}) == (None, [])
