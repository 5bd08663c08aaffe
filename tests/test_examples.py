"""Every example runs with --tiny, as a user would run it, and ends with its result line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NEEDS_DATA = {
    "continual_tasks",
    "generative_quick",
    "getting_started",
    "partial_head",
    "resnet_per_sample",
    "siren_mnist",
}


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py")))
def test_example_runs_tiny(name, data_root):
    argv = [sys.executable, str(EXAMPLES / f"{name}.py"), "--tiny"]
    if name in NEEDS_DATA:
        argv += ["--data-dir", str(data_root)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    m = re.fullmatch(rf"example={name} metric=(\w+) value=(\S+)", last)
    assert m, last
    assert float(m.group(2)) == float(m.group(2))  # a number, not NaN
