"""Tests for hyperlab.runtime: the device, threads, input checks and glibc's freed memory."""

from __future__ import annotations

import os
import platform
import time

import pytest
import torch

from hyperlab import MLP
from hyperlab.runtime import (
    input_checks,
    keep_freed_memory,
    median_seconds,
    num_threads,
    resolve_device,
)


def test_resolve_device_names_the_argument() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--device: expected 'cpu' or 'cuda', got 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="device: expected"):
        resolve_device("meta", argument="device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_num_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with num_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads: expected a positive int"):
        with num_threads(0):
            pass


def test_input_checks_switch_off_only_the_data_dependent_check() -> None:
    g = MLP([3, 4, 2])
    params = g.init_params()
    bad = torch.tensor([[float("nan"), 0.0, 0.0]])
    with pytest.raises(ValueError, match="x: contains NaN"):
        g(bad, params)
    with input_checks(False):
        assert torch.isnan(g(bad, params)).all()  # no check, no host read-back
        with pytest.raises(ValueError, match="x: expected shape"):
            g(torch.zeros(1, 5), params)  # shape checks stay
        with input_checks(True):
            with pytest.raises(ValueError, match="NaN"):
                g(bad, params)
    with pytest.raises(ValueError, match="NaN"):
        g(bad, params)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_retains_then_releases_large_blocks():
    def freed_mib() -> float:  # how much RSS a freed 256 MiB tensor gives back
        x = torch.ones(64 * 2**20)
        before = _rss_mib()
        del x
        return before - _rss_mib()

    assert freed_mib() > 200  # glibc's default: a block this large is mmap'd, unmapped on free
    with keep_freed_memory() as kept:
        assert kept
        assert freed_mib() < 50  # kept for reuse by the next step's tensors
        with keep_freed_memory():
            pass
        assert freed_mib() < 50  # a nested block does not undo the outer one
        inside = _rss_mib()
    assert inside - _rss_mib() > 200  # leaving the block gives the kept memory back (trim)


def test_median_seconds_times_the_call_and_checks_its_arguments():
    calls = []
    t = median_seconds(lambda: (calls.append(1), time.sleep(0.01)), "cpu", repeats=3, warmup=1)
    assert len(calls) == 4 and 0.009 < t < 0.5
    with pytest.raises(ValueError, match="repeats, warmup"):
        median_seconds(lambda: None, repeats=0)
