"""Reproducible construction from a ``torch.Generator`` for code that draws from torch's global
stream (``nn.Linear``'s default init, ``nn.init`` calls without a generator)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["seeded"]


@contextmanager
def seeded(generator: torch.Generator | None) -> Iterator[None]:
    """Inside the block, the global CPU stream starts from a seed drawn from ``generator``;
    afterwards it is as before the block. ``None`` leaves the global stream in use."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
