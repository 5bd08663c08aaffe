"""Kernel matrices in tiles: a matrix that is never built whole
([`Tiles`][hyperlab.kernels.tiles.Tiles]), the jobs that
cover it, running them across CPU threads, and filling a preallocated output from them.

The mathematics of each kernel lives in [`hyperlab.kernels.analytic`][hyperlab.kernels.analytic];
this module is the
machinery every tiled computation shares (the analytic kernels' ``__call__``, the matrix-free
solver of [`hyperlab.kernels.iterative`][hyperlab.kernels.iterative], the kernel regression front
door).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_BLOCK",
    "KERNEL_NAMES",
    "Get",
    "Index",
    "Tiles",
    "check_dtype",
    "check_positive_int",
    "fill_tiles",
    "parse_get",
    "run_tiles",
    "tile_jobs",
]

KERNEL_NAMES = ("nngp", "ntk")
Get = str | Sequence[str]
DEFAULT_BLOCK = 256
Index = slice | Tensor
Job = TypeVar("Job")


def parse_get(get: Get) -> tuple[tuple[str, ...], bool]:
    single = isinstance(get, str)
    names: tuple[str, ...] = (get,) if isinstance(get, str) else tuple(get)
    bad = [g for g in names if g not in KERNEL_NAMES]
    if bad or not names:
        raise ValueError(f"get: expected 'nngp', 'ntk' or a tuple of them, got {get!r}")
    return names, single


def check_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 or float32, else a named error."""
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype: expected torch.float64 or torch.float32, got {dtype!r}")
    return dtype


def check_positive_int(value: int, argument: str, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{argument}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def _check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype: expected torch.float64 or torch.float32, got {dtype!r}")
    return dtype


@dataclass(frozen=True)
class Tiles:
    """A kernel matrix that is never built whole: ``tile(rows, cols)`` computes the block
    K[rows, cols] of every kernel in ``names`` (a dict name -> tensor); rows and cols are
    slices or index tensors.

    ``shape`` is (N, M); ``symmetric`` when both inputs are the same batch (then K[cols, rows]
    is the transpose of K[rows, cols]). Made by ``MLPKernel.tiles`` and ``HyperKernel.tiles``.
    """

    tile: Callable[[Index, Index], dict[str, Tensor]]
    shape: tuple[int, int]
    names: tuple[str, ...]
    symmetric: bool
    device: torch.device
    dtype: torch.dtype

    def __post_init__(self) -> None:
        if self.dtype == torch.float32 and self.device.type == "cpu":
            object.__setattr__(self, "tile", _flushing_denormals(self.tile))


def _flushing_denormals(
    tile: Callable[[Index, Index], dict[str, Tensor]],
) -> Callable[[Index, Index], dict[str, Tensor]]:
    """float32 tiles run with denormals flushed to zero (a per-thread CPU flag, restored to
    off after): products of far-apart points' tiny covariances otherwise fall into the
    denormal range, where every pass over them is several times slower."""

    def flushed(rows: Index, cols: Index) -> dict[str, Tensor]:
        torch.set_flush_denormal(True)
        try:
            return tile(rows, cols)
        finally:
            torch.set_flush_denormal(False)

    return flushed


def run_tiles(work: Callable[[Job], None], jobs: Sequence[Job], device: torch.device) -> None:
    """Run ``work`` on every job; on the CPU with T > 1 torch threads, T at a time, each job
    single-threaded (a tile's elementwise passes are too small to split across threads)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or len(jobs) <= 1:
        for job in jobs:
            work(job)
        return
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(work, jobs):
                pass
    finally:
        torch.set_num_threads(threads)


def tile_jobs(tiles: Tiles, block: int) -> list[tuple[slice, slice, bool]]:
    """(rows, cols, off_diagonal) blocks covering ``tiles``; block upper triangle only if
    symmetric."""
    n, m = tiles.shape
    return [
        (slice(i0, min(i0 + block, n)), slice(j0, min(j0 + block, m)), j0 != i0)
        for i0 in range(0, n, block)
        for j0 in range(i0 if tiles.symmetric else 0, m, block)
    ]


def fill_tiles(tiles: Tiles, block: int) -> dict[str, Tensor]:
    """Fill preallocated (n, m) outputs tile by tile; upper-triangle tiles only if symmetric.

    On the CPU with T > 1 torch threads, T tiles run at a time, each single-threaded: a tile's
    ~90 elementwise passes are too small to split across threads (two threads on one tile ran
    slower than one), so the parallelism goes across tiles instead. Every tile is computed
    exactly as on one thread, so the result does not depend on T.
    """
    (n, m), names, symmetric = tiles.shape, tiles.names, tiles.symmetric
    out = {k: torch.empty(n, m, dtype=tiles.dtype, device=tiles.device) for k in names}

    def work(job: tuple[slice, slice, bool]) -> None:
        rows, cols, off_diagonal = job
        res = tiles.tile(rows, cols)
        for k in names:  # tiles cover disjoint blocks: concurrent writes never overlap
            out[k][rows, cols] = res[k]
            if symmetric and off_diagonal:
                out[k][cols, rows] = res[k].T

    run_tiles(work, tile_jobs(tiles, block), tiles.device)
    if symmetric:  # diagonal tiles are symmetric up to rounding: make them exactly so
        for k in names:
            for i0 in range(0, n, block):
                s = slice(i0, min(i0 + block, n))
                blk = out[k][s, s]
                out[k][s, s] = 0.5 * (blk + blk.T)
    return out
