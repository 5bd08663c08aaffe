"""Every Python block in README.md runs as written (in a fresh namespace, one thread)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_library_and_kernel_blocks():
    assert len(BLOCKS) >= 2
    assert any("HyperModel(" in b and "fit(" in b for b in BLOCKS)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_a_readme_block_runs_as_written(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[i], f"README.md block {i + 1}", "exec"), {"__name__": "__readme__"})
