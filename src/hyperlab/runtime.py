"""Where and how computation runs: the device, CPU threads, the allocator, input checks.

The runtime concerns every path of hyperlab shares (training, the kernels, the experiments, the
benchmarks): [`resolve_device`][hyperlab.runtime.resolve_device] turns ``cpu`` / ``cuda[:i]`` into
a device or a clear error,
[`num_threads`][hyperlab.runtime.num_threads] sets torch's CPU threads for a block,
[`keep_freed_memory`][hyperlab.runtime.keep_freed_memory] keeps glibc
from returning large freed blocks to the OS between steps, and
[`input_checks`][hyperlab.runtime.input_checks] switches
off the data-dependent input checks (NaN/inf), which on a GPU cost a host synchronisation.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

__all__ = [
    "median_seconds",
    "checks_enabled",
    "cpu_model",
    "input_checks",
    "keep_freed_memory",
    "num_threads",
    "resolve_device",
    "synchronize",
]


def resolve_device(device: str | torch.device, argument: str = "--device") -> torch.device:
    """``cpu`` or ``cuda[:i]``; asking for CUDA without a GPU is a clear error naming
    ``argument``."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{argument}: expected 'cpu' or 'cuda', got {device!r}") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{argument}: expected 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{argument} cuda: no CUDA GPU is available on this machine; use {argument} cpu"
        )
    return dev


def synchronize(device: str | torch.device | None = None) -> None:
    """Wait for the device's queued work (a no-op on the CPU): call around every timed region."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev is None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_seconds(
    fn: Callable[[], object],
    device: str | torch.device | None = None,
    *,
    repeats: int = 10,
    warmup: int = 2,
) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones,
    the device synchronised around every timed call (so a GPU's queued work is counted)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats, warmup: expected >= 1 and >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` torch CPU threads (None: unchanged); restored after.
    Small models run best at one thread: a second one only spin-waits."""
    before = torch.get_num_threads()
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads: expected a positive int or None, got {threads!r}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


_checks = [True]


def checks_enabled() -> bool:
    """Whether data-dependent input checks (NaN/inf in x and conditions) run now."""
    return _checks[-1]


@contextlib.contextmanager
def input_checks(enabled: bool) -> Iterator[None]:
    """Turn the data-dependent input checks on or off inside the block (they nest). Shape and
    dtype checks always run; the NaN/inf checks read a value back from the device, a host
    synchronisation on a GPU, so [`hyperlab.train.fit`][hyperlab.train.loop.fit] checks the first
    batch
    and runs the
    rest without them."""
    _checks.append(bool(enabled))
    try:
        yield
    finally:
        _checks.pop()


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters
_kept_depth = 0  # open keep_freed_memory() blocks


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Within the block, glibc keeps freed memory for reuse: large blocks are not mmap'd and the
    heap is not trimmed, so a training step's large CPU tensors reuse warm pages instead of
    page-faulting fresh ones every step (the generating paper's step: ~20 % faster,
    ``benchmarks/generative_step.py``). The same as ``MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=...`` for the process; on leaving the outermost block glibc's
    default limits come back and the kept memory is returned (``malloc_trim``), though a large
    block that later fits a free hole in the heap is served from it. Blocks nest. Yields False,
    and changes nothing, without glibc."""
    global _kept_depth
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        yield False
        return
    ok = True
    if _kept_depth == 0:  # nested blocks: only the outermost one sets and undoes
        ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    _kept_depth += 1
    try:
        yield ok
    finally:
        _kept_depth -= 1
        if _kept_depth == 0:
            mallopt(_M_MMAP_MAX, 65536)
            mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
            trim(0)


def cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo) and whether it has AMX / AVX-512 BF16: for
    records and benchmark lines, which name the CPU beside every timing."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), None)  # fmt: skip
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])  # fmt: skip
    features = [f for f, tag in (("AMX", "amx_bf16"), ("AVX-512 BF16", "avx512_bf16"))
                if tag in flags]  # fmt: skip
    return f"{name} ({', '.join(features)})" if name and features else name
