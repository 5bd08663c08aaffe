"""``hyperlab rejudge``: a finished record judged again from its config and metrics."""

from __future__ import annotations

import json

import pytest

from hyperlab.cli import main
from hyperlab.experiments.config import ConfigError
from hyperlab.experiments.rejudge import rejudge

ARGV = ["--preset", "tiny", "--no-progress", "--set", "depths=[2,3]", "seeds=2", "epochs=1"]


def test_rejudge_rewrites_claims_and_scale_and_reports_flips(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "modularity-synthetic-depth", "--out", str(out), *ARGV]) == 0
    path = out / "results.json"
    record = json.loads(path.read_text())
    metrics = record["metrics"]
    # an older record: other claim texts and verdicts, no scale
    record["claims"] = [
        {
            "claim": c["claim"] + " (old rule)",
            "paper_ref": c["paper_ref"],
            "held": not c["held"],
            "evidence": {},
        }
        for c in record["claims"]
    ]
    del record["scale"]
    path.write_text(json.dumps(record))
    flips = rejudge(out)
    assert len(flips) == len(record["claims"])  # every verdict was the opposite
    assert all(f.old_claim.endswith("(old rule)") for f in flips)
    new = json.loads(path.read_text())
    assert new["metrics"] == metrics  # untouched
    assert new["scale"]["scale"] == "reduced"
    assert [c["held"] for c in new["claims"]] == [f.claim.held for f in flips]
    assert new["rejudged"]["previous_claims"][0]["claim"].endswith("(old rule)")
    capsys.readouterr()
    assert main(["rejudge", str(tmp_path)]) == 0  # again: nothing changes
    assert "0 verdict(s) changed" in capsys.readouterr().out


def test_rejudge_may_change_only_what_the_claims_compare_with(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "modularity-synthetic-depth", "--out", str(out), *ARGV]) == 0
    with pytest.raises(ConfigError, match="--set lr: rejudge may change only"):
        rejudge(out, {"lr": 0.5})
