"""``hyperlab report``: several runs gathered into one Markdown page."""

import json

import pytest
import torch

from hyperlab.cli import main
from hyperlab.experiments import run_experiment
from hyperlab.experiments.claims import Claim, format_evidence
from hyperlab.report import ReportError, find_results, load_records, render_report, write_report


def _fake_run(folder, name, claims, evidence=None, figures=(), scale=None):
    evidence = evidence or {}
    claims = [{"claim": c, "paper_ref": "Fig. 9", "held": h, "evidence": evidence.get(c, {}),
               "rule": f"rule of {c}", "not_judged": None if h is not None else f"why {c}"}
              for c, h in claims.items()]  # fmt: skip
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
        "metrics": {},
        "command": f"hyperlab run {name} --quick",
        "git": {"commit": "0123456789abcdef", "dirty": False},
        "machine": {"cpu_count": 2, "processor": "x86_64", "torch_threads": 2},
        "paper_reference": {"claims": ["the paper says so"]},
        "claims": claims,
        "comparison": [["k=2: error hyper / emb", "qualitative", "0.1 | 0.2"]],
        "notes": ["a note"],
        "figures": list(figures),
        "wall_seconds": 1.5,
        "scale": scale or {"scale": "paper", "below": [], "beyond": []},
    }
    (folder / "results.json").write_text(json.dumps(record))
    return record


def test_table_has_one_row_per_claim_with_numbers_and_verdict(tmp_path):
    _fake_run(tmp_path / "runs" / "a", "exp-a", {"c1": True, "c2": False, "c4": None},
              {"c1": {"hn": 0.1, "emb": 0.2}}, figures=["fig.png"])  # fmt: skip
    _fake_run(
        tmp_path / "runs" / "b",
        "exp-b",
        {"c3": True},
        scale={"scale": "reduced", "below": ["seeds 2 (the paper: 100)"], "beyond": []},
    )
    _fake_run(tmp_path / "runs" / "c", "exp-c", {"c5": True}, scale={
        "scale": "reduced", "below": ["seeds 5 (the paper: 100)"],
        "beyond": ["target centred (the paper: sigmoid)"]})  # fmt: skip
    text, out = write_report([tmp_path / "runs"], tmp_path / "page" / "report.md")
    assert out.read_text() == text
    rows = [line for line in text.splitlines() if line.startswith("| Fig. 9 |")]
    assert len(rows) == 5
    assert ("| Fig. 9 | c1 | rule of c1 | hn = 0.1; emb = 0.2 | yes | paper | "
            "`hyperlab run exp-a --quick` | quick | seed 0, 0.0 min | 2-core x86_64 CPU, "
            "2 threads | 0123456789 |") in rows  # fmt: skip
    assert any("| c2 |" in r and "| **no** |" in r for r in rows)
    assert any("| c4 |" in r and "| not judged (why c4) |" in r for r in rows)
    assert any("| c3 |" in r and "| reduced: seeds 2 (the paper: 100) |" in r for r in rows)
    # a reduced run outside the paper's setting says both
    assert ("| c5 | rule of c5 |  | yes | reduced: seeds 5 (the paper: 100); outside the paper: "
            "target centred (the paper: sigmoid) |") in text  # fmt: skip
    assert "- at paper scale: 1 of 2 judged claims held (1 not judged)" in text
    assert "- at reduced scale: 2 of 2 judged claims held (0 not judged)" in text
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
    run_experiment("modularity-synthetic-depth", out_dir=tmp_path / "r1", **kw)
    rec = json.loads((tmp_path / "r1" / "results.json").read_text())  # as the report reads it
    assert main(["report", str(tmp_path / "r1"), "--out", str(tmp_path / "report.md")]) == 0
    text = (tmp_path / "report.md").read_text()
    for c in map(Claim.from_dict, rec["claims"]):
        verdict = {True: "yes", False: "**no**", None: "not judged"}[c.held]
        if c.held is None:
            verdict += f" ({c.not_judged})"
        assert f"| {c.claim} | {c.rule} | {format_evidence(c.evidence)} | {verdict} |" in text
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
    assert "| Fig. 9 | (none) |" in text
