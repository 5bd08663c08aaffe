"""mkdocs hooks: pages built from code that runs and from the recorded runs.

- ``<!-- example: NAME -->`` becomes ``examples/NAME.py`` and what ``python examples/NAME.py
  --tiny`` printed during this build (and the figures it wrote, where the example takes
  ``--figure-dir``); an example that fails fails the build.
- ``<!-- records: ARXIV -->`` becomes a section per recorded run of that paper in ``results/``
  (``hyperlab.report.render_run``): the paper's statements, our numbers, the claim rows, the
  scale, the command and the figures, copied into the site.
- After the build every page is checked: no raw reST role, every image present.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

from hyperlab.report import render_run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = re.compile(r"<!-- example: (\w+) -->")
RECORDS = re.compile(r"<!-- records: ([\w.]+) -->")
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`")
_outputs: dict[str, tuple[str, list[str]]] = {}
_figures = Path(tempfile.mkdtemp(prefix="hyperlab-docs-"))


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    shared = ROOT.parent / "shared" / "data"
    if "HYPERLAB_DATA" not in env and shared.is_dir():
        env["HYPERLAB_DATA"] = str(shared)
    return env


def _run_example(name: str) -> tuple[str, list[str]]:
    script = ROOT / "examples" / f"{name}.py"
    if not script.is_file():
        raise PluginError(f"<!-- example: {name} -->: no file examples/{name}.py")
    argv = [sys.executable, str(script), "--tiny"]
    out_dir = _figures / name
    if "--figure-dir" in script.read_text():
        out_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--figure-dir", str(out_dir)]
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=600)
    if done.returncode != 0:
        raise PluginError(f"examples/{name}.py --tiny failed:\n{done.stderr[-3000:]}")
    figs = sorted(p.name for p in out_dir.glob("*.png")) if out_dir.is_dir() else []
    return done.stdout, figs


def on_files(files: Files, config) -> Files:
    """Run every example a page names (two at a time) and add the recorded figures."""
    names = sorted({m for p in Path(config["docs_dir"]).rglob("*.md")
                    for m in EXAMPLE.findall(p.read_text())})  # fmt: skip
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        _outputs.update(zip(names, pool.map(_run_example, names), strict=True))
    for name, (_, figs) in _outputs.items():
        for fig in figs:
            src = _figures / name / fig
            files.append(File.generated(config, f"examples/{name}/{fig}", abs_src_path=str(src)))
    for result in sorted((ROOT / "results").glob("*/results.json")):
        for fig in json.loads(result.read_text()).get("figures", []):
            rel = result.parent.relative_to(ROOT) / fig
            if not (ROOT / rel).is_file():
                raise PluginError(f"{result}: figure {fig} is not in the run folder")
            files.append(File.generated(config, rel.as_posix(), abs_src_path=str(ROOT / rel)))
    return files


def _example_markdown(name: str, page_dir: Path) -> str:
    source = (ROOT / "examples" / f"{name}.py").read_text().rstrip()
    out, figs = _outputs[name]
    parts = [
        f'```python title="examples/{name}.py"',
        source,
        "```",
        "",
        f"What `python examples/{name}.py --tiny` printed when this page was built:",
        "",
        "```text",
        out.rstrip(),
        "```",
    ]
    links = [os.path.relpath(f"examples/{name}/{fig}", page_dir) for fig in figs]
    parts += [f"\n![{Path(link).name}]({Path(link).as_posix()})" for link in links]
    return "\n".join(parts)


def _records_markdown(arxiv: str, page_dir: Path) -> str:
    lines: list[str] = []
    for result in sorted((ROOT / "results").glob("*/results.json")):
        record = json.loads(result.read_text())
        if record.get("arxiv") == arxiv:
            rel = result.relative_to(ROOT)
            lines += [*render_run(rel, record, page_dir, level=3, claims=True), ""]
    if not lines:
        raise PluginError(f"<!-- records: {arxiv} -->: no results/*/results.json of that paper")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    page_dir = Path(page.file.src_uri).parent
    markdown = EXAMPLE.sub(lambda m: _example_markdown(m.group(1), page_dir), markdown)
    return RECORDS.sub(lambda m: _records_markdown(m.group(1), page_dir), markdown)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.srcs += [v for k, v in attrs if k == "src" and v]

    @classmethod
    def srcs_of(cls, html: str) -> list[str]:
        """Every ``<img src>`` of a page."""
        parser = cls()
        parser.feed(html)
        return parser.srcs


def on_post_build(config) -> None:
    """Fail on a raw reST role or a missing image in any built page."""
    site = Path(config["site_dir"])
    problems = []
    for html in site.rglob("*.html"):
        text = html.read_text()
        if ROLE.search(text):
            problems.append(f"{html.relative_to(site)}: raw reST role {ROLE.search(text)[0]!r}")
        for src in _Images.srcs_of(text):
            url = urlparse(src)
            if url.scheme or url.netloc or src.startswith("data:"):
                continue
            path = unquote(url.path)
            target = site / path.lstrip("/") if path.startswith("/") else html.parent / path
            if not target.is_file():
                problems.append(f"{html.relative_to(site)}: image {src} is missing")
    if problems:
        raise PluginError("the built site has problems:\n" + "\n".join(problems[:20]))
