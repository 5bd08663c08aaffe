"""The docs build's hooks (docs/hooks.py): pages from the recorded runs, and the checks that
fail the build on a raw reST role or a missing image; the built pages in headless Chromium
where it is installed."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e .[docs])")
from mkdocs.exceptions import PluginError  # noqa: E402  (after the importorskip)

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
hooks = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(hooks)


def _record(tmp: Path, arxiv: str = "1234.5678") -> Path:
    run = tmp / "results" / "fig-x"
    run.mkdir(parents=True)
    (run / "curve.png").write_bytes(b"png")
    claim = {"claim": "A beats B", "paper_ref": "Fig. 9", "held": False,
             "evidence": {"A": 0.5, "B": 0.7}, "rule": "A above B beyond 2 SE"}  # fmt: skip
    record = {"experiment": "fig-x", "arxiv": arxiv, "preset": "full", "reproduces": "Fig. 9",
              "summary": "the figure", "claims": [claim], "metrics": {},
              "scale": {"scale": "reduced", "below": ["seeds 1 < 5"]},
              "command": "hyperlab run fig-x --preset full", "figures": ["curve.png"],
              "comparison": [["accuracy", "97 %", "95 %"]]}  # fmt: skip
    (run / "results.json").write_text(json.dumps(record))
    return run


def test_records_become_a_section_with_claims_scale_command_and_figures(tmp_path, monkeypatch):
    _record(tmp_path)
    monkeypatch.setattr(hooks, "ROOT", tmp_path)
    md = hooks._records_markdown("1234.5678", Path("papers"))
    assert "| A beats B | A above B beyond 2 SE | A = 0.5; B = 0.7 | **no** |" in md
    assert "scale reduced: seeds 1 < 5" in md
    assert "`hyperlab run fig-x --preset full`" in md
    assert "![curve.png](../results/fig-x/curve.png)" in md
    assert "| accuracy | 97 % | 95 % |" in md
    with pytest.raises(PluginError, match="no results"):
        hooks._records_markdown("0000.0000", Path("papers"))


def _site(tmp: Path, body: str) -> Path:
    site = tmp / "site"
    (site / "page").mkdir(parents=True)
    (site / "img.png").write_bytes(b"png")
    (site / "page" / "index.html").write_text(f"<html><body>{body}</body></html>")
    return site


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("<p>see <code>:class:`~hyperlab.MLP`</code></p>", "raw reST role"),
        ('<img src="../missing.png">', "missing"),
        ('<img src="/nowhere/a.png">', "missing"),
    ],
)
def test_the_build_fails_on_a_raw_role_or_a_missing_image(tmp_path, body, problem):
    with pytest.raises(PluginError, match=problem):
        hooks.on_post_build({"site_dir": str(_site(tmp_path, body))})


def test_a_good_page_passes(tmp_path):
    body = '<img src="../img.png"><img src="https://example.org/x.png"><p>:class is fine</p>'
    hooks.on_post_build({"site_dir": str(_site(tmp_path, body))})


def test_an_example_that_fails_fails_the_build(tmp_path, monkeypatch):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "broken.py").write_text("raise SystemExit('no data here')\n")
    monkeypatch.setattr(hooks, "ROOT", tmp_path)
    with pytest.raises(PluginError, match="broken.py --tiny failed"):
        hooks._run_example("broken")
    with pytest.raises(PluginError, match="no file examples/absent.py"):
        hooks._run_example("absent")


CHROMIUM = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome", "headless_shell")
     if shutil.which(b)),
    None,
)  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed here")
@pytest.mark.parametrize("page", ["index.html", "api/primary/index.html"])
def test_built_pages_render_in_chromium(page):
    site = ROOT / "build" / "site"
    if not (site / page).is_file():
        subprocess.run(["mkdocs", "build", "--site-dir", str(site)], cwd=ROOT, check=True)
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom",
         (site / page).as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "<article" in dom
    assert not hooks.ROLE.search(dom)
    for src in hooks._Images.srcs_of(dom):
        if not src.startswith(("http:", "https:", "data:")):
            assert ((site / page).parent / src).resolve().is_file(), src
