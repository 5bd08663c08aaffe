"""Fixtures shared by the whole suite: where the real datasets are, and one torch thread."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """$HYPERLAB_DATA (relative: to the cwd, else to the repo), else ../shared/data.

    Tests that need data read it from here and fail (never skip) when it is missing.
    """
    env = os.environ.get("HYPERLAB_DATA")
    if env:
        root = Path(env).expanduser()
        if not root.is_absolute() and not root.is_dir():
            root = REPO / root
    else:
        root = REPO / ".." / "shared" / "data"
    return root.resolve()


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread avoids OpenMP spin-waiting, and keeps timings steady."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
