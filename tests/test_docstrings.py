"""Docstrings render on the docs site: no raw reST roles (mkdocstrings shows them verbatim),
and every cross-reference ``[`X`][hyperlab.mod.X]`` names an object that exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hyperlab"
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`")
REF = re.compile(r"\]\[(hyperlab(?:\.\w+)+)\]")


def _resolve(path: str) -> object:
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def test_no_raw_rest_roles():
    hits = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if ROLE.search(line)
    ]
    assert not hits, f"reST roles render verbatim on the docs site: {hits[:10]}"


REFS = sorted({m for p in SRC.rglob("*.py") for m in REF.findall(p.read_text())})


def test_there_are_cross_references():
    assert len(REFS) > 20


@pytest.mark.parametrize("ref", REFS)
def test_a_cross_reference_resolves(ref):
    assert not any(part.startswith("_") for part in ref.split(".")), (
        f"{ref}: private names are not on the docs site"
    )
    try:
        _resolve(ref)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"{ref}: {e!r}")
