"""``hyperlab report DIR...``: gather finished runs into one Markdown page.

Each DIR is a run folder holding ``results.json`` (as written by
[`hyperlab.experiments.run_experiment`][hyperlab.experiments.runner.run_experiment]) or a folder
searched
recursively for them. The
page opens with one table, a row per (run, claim): the paper's figure, the claim, our numbers
behind it and whether it held; then a section per run with its comparison rows, notes and
figures (linked relative to the page). Every number on the page is read from the runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hyperlab.experiments.base import RESULTS_NAME
from hyperlab.experiments.claims import Claim, format_evidence
from hyperlab.io import atomic_write_text

__all__ = [
    "ReportError",
    "find_results",
    "load_records",
    "render_report",
    "render_run",
    "write_report",
]


class ReportError(ValueError):
    """A report input is missing or is not a hyperlab results file."""


def find_results(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """``results.json`` files: a file itself, ``DIR/results.json``, or any below ``DIR``."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_file():
            hits = [p]
        elif (p / RESULTS_NAME).is_file():
            hits = [p / RESULTS_NAME]
        elif p.is_dir():
            hits = sorted(p.rglob(RESULTS_NAME))
            if not hits:
                raise ReportError(f"{p}: no {RESULTS_NAME} in this folder or below it")
        else:
            raise ReportError(f"{p}: no such file or folder")
        found += [h for h in hits if h.resolve() not in {f.resolve() for f in found}]
    if not found:
        raise ReportError("no results given: pass run folders holding results.json")
    return found


def load_records(files: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Read and check each results file; a bad one is a
    [`ReportError`][hyperlab.report.ReportError] naming it."""
    out = []
    for f in files:
        try:
            record = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ReportError(f"{f}: not a readable JSON results file ({e})") from e
        missing = [k for k in ("experiment", "claims", "metrics") if k not in record]
        if not isinstance(record, dict) or missing:
            raise ReportError(f"{f}: not a hyperlab results file (missing {missing})")
        out.append((f, record))
    return out


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return lines


def _run_label(record: Mapping[str, Any]) -> str:
    cfg = record.get("config", {})
    extra = [f"{k}={cfg[k]}" for k in ("dataset",) if k in cfg]
    if cfg.get("tune"):
        extra.append("tuned lr")
    tail = f", {', '.join(extra)}" if extra else ""
    return f"{record['experiment']} ({record.get('preset', '?')}{tail})"


def _claims(record: Mapping[str, Any]) -> list[Claim]:
    return [Claim.from_dict(c) for c in record["claims"]]


def _provenance(record: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(command, seeds and wall time, machine, commit) of a run."""
    command = (
        record.get("command")
        or f"hyperlab run {record['experiment']} --preset "
        f"{record.get('preset', '?')} --seed {record.get('seed', 0)}"
    )
    cfg = record.get("config", {})
    seeds = cfg.get("seeds") or cfg.get("draws") or cfg.get("hn_runs")
    run = f"seed {record.get('seed', '?')}" + (f" ({seeds} repetitions)" if seeds else "")
    if "wall_seconds" in record:
        run += f", {record['wall_seconds'] / 60:.1f} min"
        if record.get("peak_memory_mb"):
            run += f", peak memory {record['peak_memory_mb'] / 1024:.1f} GB"
        resumed = record.get("resumed_from") or {}
        if resumed.get("trained_seconds"):
            run += f" (+{resumed['trained_seconds'] / 60:.1f} min of resumed training)"
    m = record.get("machine") or {}
    machine = m.get("gpu") or (f"{m.get('cpu_count', '?')}-core {m.get('processor', '')} CPU, "
                               f"{m.get('torch_threads', '?')} threads" if m else "?")  # fmt: skip
    git = record.get("git") or {}
    commit = (
        (git.get("commit", "?")[:10] + (" (dirty)" if git.get("dirty") else "")) if git else "?"
    )
    return command, run, machine, commit


def _scale(record: Mapping[str, Any]) -> str:
    """``paper``, ``reduced: ...`` (every dimension below the paper's, then any outside it)
    or ``beyond: ...``."""
    sc = record.get("scale") or {}
    label = sc.get("scale", "unknown (recorded before scales)")
    outside = sc.get("beyond", [])
    if label != "beyond":  # a reduced run may also leave the paper's setting (e.g. its target)
        outside = [f"outside the paper: {b}" for b in outside]
    parts = [*sc.get("below", []), *outside]
    return f"{label}: {'; '.join(parts)}" if parts else label


def _counts(records: Sequence[tuple[Path, Mapping[str, Any]]]) -> list[str]:
    """How many claims held, per scale: paper-scale runs counted on their own."""
    by: dict[str, list[Claim]] = {}
    for _, r in records:
        by.setdefault((r.get("scale") or {}).get("scale", "unknown"), []).extend(_claims(r))
    lines = [f"{len(records)} run(s)."]
    for scale in ("paper", "reduced", "beyond", "unknown"):
        claims = by.get(scale, [])
        if not claims:
            continue
        held = sum(c.held is True for c in claims)
        judged = sum(c.held is not None for c in claims)
        lines.append(f"- at {scale} scale: {held} of {judged} judged claims held "
                     f"({len(claims) - judged} not judged)")  # fmt: skip
    dirty = [str(r.get("experiment")) for _, r in records if (r.get("git") or {}).get("dirty")]
    if dirty:
        lines.append(f"- {len(dirty)} run(s) made from a tree with uncommitted changes "
                     "(commit marked dirty)")  # fmt: skip
    return [*lines, ""]


def render_report(
    records: Sequence[tuple[Path, Mapping[str, Any]]],
    page_dir: str | os.PathLike[str],
    title: str = "hyperlab report",
) -> str:
    """The Markdown page; figure links are relative to ``page_dir``."""
    page_dir = Path(page_dir)
    lines = [f"# {title}", ""]
    papers = sorted({str(r.get("paper", "")) for _, r in records if r.get("paper")})
    if papers:
        lines += ["Paper(s): " + "; ".join(papers), ""]
    lines += _counts(records)
    summary = []
    for _, r in records:
        command, run, machine, commit = _provenance(r)
        scale = _scale(r)
        for c in _claims(r):
            summary.append((c.paper_ref or r.get("reproduces", ""), c.claim, c.rule or "-",
                            format_evidence(c.evidence), _held(c), scale, f"`{command}`",
                            r.get("preset", "?"), run, machine, commit))  # fmt: skip
        if not r["claims"]:
            summary.append((r.get("reproduces", ""), "(none)", "", "", "", scale,
                            f"`{command}`", r.get("preset", "?"), run, machine,
                            commit))  # fmt: skip
    lines += _table(["paper", "claim", "rule", "ours", "held", "scale", "command", "preset",
                     "seeds, wall time", "machine", "commit"], summary)  # fmt: skip
    for path, r in records:
        lines += ["", *render_run(path, r, page_dir)]
    return "\n".join(lines) + "\n"


def render_run(
    path: Path,
    r: Mapping[str, Any],
    page_dir: str | os.PathLike[str],
    level: int = 2,
    claims: bool = False,
) -> list[str]:
    """One run's section (Markdown lines): what it reproduces, its scale and command, the
    paper's statements beside our numbers, its notes and figures (linked relative to
    ``page_dir``), and with ``claims`` its claim rows."""
    command, run, _, _ = _provenance(r)
    lines = [f"{'#' * level} {_run_label(r)}", "", f"{r.get('summary', '')}".strip(), ""]
    info = [
        f"reproduces {r.get('reproduces', '?')}",
        f"scale {_scale(r)}",
        f"device {r.get('device', '?')}",
        run,
    ]
    lines += [f"Results: `{path}`; " + ", ".join(info) + ".", "", f"Command: `{command}`", ""]
    ref = r.get("paper_reference", {})
    if ref.get("claims"):
        lines += ["Paper's claims:", ""] + [f"- {c}" for c in ref["claims"]] + [""]
    if r.get("comparison"):
        lines += _table(["quantity", "paper", "hyperlab (this run)"], r["comparison"])
        lines.append("")
    if claims and r["claims"]:
        rows = [(c.claim, c.rule or "-", format_evidence(c.evidence), _held(c))
                for c in _claims(r)]  # fmt: skip
        lines += [*_table(["claim", "rule", "ours", "held"], rows), ""]
    for note in r.get("notes", []):
        lines.append(f"- note: {note}")
    for fig in r.get("figures", []):
        rel = os.path.relpath(path.parent / fig, page_dir)
        lines += ["", f"![{fig}]({Path(rel).as_posix()})"]
    return lines


def _held(c: Claim) -> str:
    ok = {True: "yes", False: "**no**", None: "not judged"}[c.held]
    return ok + (f" ({c.not_judged})" if c.held is None and c.not_judged else "")


def write_report(
    paths: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    title: str = "hyperlab report",
) -> tuple[str, Path | None]:
    """Gather ``paths`` and write the page to ``out`` (atomic); return (text, out path)."""
    records = load_records(find_results(paths))
    out_path = Path(out).expanduser() if out is not None else None
    page_dir = out_path.parent if out_path is not None else Path.cwd()
    text = render_report(records, page_dir, title)
    if out_path is not None:
        atomic_write_text(out_path, text, what="the report")
    return text, out_path
