"""``hyperlab report``: several runs gathered into one Markdown page."""

import json

import pytest
import torch

from hyperlab.cli import main
from hyperlab.experiments import run_experiment
from hyperlab.report import ReportError, find_results, load_records, render_report, write_report


def _fake_run(folder, name, claims, evidence=None, figures=()):
    folder.mkdir(parents=True)
    for fig in figures:
        (folder / fig).write_bytes(b"\x89PNG\r\n\x1a\n")
    record = {
        "experiment": name,
        "paper": "Some paper",
        "reproduces": "Fig. 9",
        "summary": "a summary",
        "preset": "quick",
        "seed": 0,
        "device": "cpu",
        "config": {"dataset": "mnist"},
        "metrics": {"claim_evidence": evidence or {}},
        "paper_reference": {"claims": ["the paper says so"]},
        "claims": claims,
        "comparison": [["k=2: error hyper / emb", "qualitative", "0.1 | 0.2"]],
        "notes": ["a note"],
        "figures": list(figures),
        "wall_seconds": 1.5,
    }
    (folder / "results.json").write_text(json.dumps(record))
    return record


def test_table_has_one_row_per_claim_with_numbers_and_verdict(tmp_path):
    _fake_run(tmp_path / "runs" / "a", "exp-a", {"c1": True, "c2": False}, {"c1": "0.1 vs 0.2"},
              figures=["fig.png"])  # fmt: skip
    _fake_run(tmp_path / "runs" / "b", "exp-b", {"c3": True})
    text, out = write_report([tmp_path / "runs"], tmp_path / "page" / "report.md")
    assert out.read_text() == text
    rows = [line for line in text.splitlines() if line.startswith("| exp-")]
    assert len(rows) == 3
    assert "| exp-a (quick, dataset=mnist) | Fig. 9 | c1 | 0.1 vs 0.2 | yes |" in rows
    assert any("| c2 |" in r and r.endswith("| **no** |") for r in rows)
    assert "2 run(s); 2 of 3 checked claims held." in text
    assert "0.1 \\| 0.2" in text  # pipes inside cells are escaped
    assert "![fig.png](../runs/a/fig.png)" in text  # relative to the page
    assert (out.parent / "../runs/a/fig.png").resolve().is_file()


def test_inputs_are_checked(tmp_path):
    with pytest.raises(ReportError, match="no such file"):
        find_results([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no results.json"):
        find_results([tmp_path / "empty"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{}")
    with pytest.raises(ReportError, match="not a hyperlab results file"):
        load_records(find_results([tmp_path / "bad"]))


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine: avoid OpenMP spin-waits
    yield
    torch.set_num_threads(n)


def test_cli_report_on_real_runs(tmp_path, capsys, one_thread):
    kw = dict(preset="tiny", progress=False, overrides={"depths": [2, 3], "seeds": 1})
    rec = run_experiment("modularity-synthetic-depth", out_dir=tmp_path / "r1", **kw)
    assert main(["report", str(tmp_path / "r1"), "--out", str(tmp_path / "report.md")]) == 0
    text = (tmp_path / "report.md").read_text()
    for claim, held in rec["claims"].items():
        evidence = rec["metrics"]["claim_evidence"][claim]
        assert f"| {claim} | {evidence} | {'yes' if held else '**no**'} |" in text
    for fig in rec["figures"]:
        assert f"](r1/{fig})" in text
    capsys.readouterr()
    assert main(["report", str(tmp_path / "r1")]) == 0  # no --out: printed
    assert "# hyperlab report" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_render_without_claims(tmp_path):
    rec = _fake_run(tmp_path / "x", "exp-x", {})
    text = render_report([(tmp_path / "x" / "results.json", rec)], tmp_path)
    assert "| exp-x (quick, dataset=mnist) | Fig. 9 | (none) |" in text
