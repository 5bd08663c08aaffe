"""Tests for hyperlab.io: atomic writes, output-dir checks, safe checkpoint loading."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperlab import io as hio
from hyperlab.io import (
    CheckpointError,
    OutputDirError,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    ensure_writable_dir,
    safe_torch_load,
)


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_atomic_writes_round_trip(tmp_path: Path) -> None:
    assert atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "sub" / "b.txt", "héllo")  # parent created
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write_text(tmp_path / "a.bin", "replaced")
    assert (tmp_path / "a.bin").read_text() == "replaced"
    atomic_torch_save({"w": torch.arange(3.0)}, tmp_path / "c.pt")
    assert torch.equal(safe_torch_load(tmp_path / "c.pt")["w"], torch.arange(3.0))
    assert _names(tmp_path) == ["a.bin", "c.pt", "sub"]


def test_new_file_is_not_private(tmp_path: Path) -> None:
    # NamedTemporaryFile creates 0600 files; the result must follow the umask instead.
    atomic_write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(tmp_path / "a.txt", 0o640)
    atomic_write_text(tmp_path / "a.txt", "y")  # an existing file keeps its mode
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


def test_atomic_write_json_nan_is_null_and_converts_arrays(tmp_path: Path) -> None:
    obj = {
        "nan": math.nan,
        "inf": -math.inf,
        "t": torch.tensor([1.0, float("nan")]),
        "np": np.float32(0.5),
        "arr": np.arange(2),
        "tuple": (1, 2),
        "path": tmp_path,
        3: "int key",
    }
    path = atomic_write_json(tmp_path / "r.json", obj)
    text = path.read_text()
    assert text.endswith("\n") and '\n  "nan": null' in text  # indent 2
    assert json.loads(text) == {
        "nan": None,
        "inf": None,
        "t": [1.0, None],
        "np": 0.5,
        "arr": [0, 1],
        "tuple": [1, 2],
        "path": str(tmp_path),
        "3": "int key",
    }


def test_atomic_write_json_unserialisable_leaves_old_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError, match="object"):
        atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert _names(tmp_path) == ["r.json"]


def test_crash_inside_torch_save_keeps_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    atomic_torch_save({"v": torch.ones(2)}, target)
    before = target.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")  # a partial write, then the disk "fills up"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        atomic_torch_save({"v": torch.zeros(2)}, target)
    assert target.read_bytes() == before
    assert torch.equal(safe_torch_load(target)["v"], torch.ones(2))
    assert _names(tmp_path) == ["last.pt"]


def test_crash_in_os_replace_removes_temp_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "x.txt"
    atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("replace failed")

    monkeypatch.setattr(hio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="replace failed"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["x.txt"]


def test_keyboard_interrupt_mid_write_cleans_up(tmp_path: Path) -> None:
    def interrupted(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hio._atomic_write(tmp_path / "y.bin", interrupted, "a test file")
    assert _names(tmp_path) == []


def test_ensure_writable_dir_creates_nested(tmp_path: Path) -> None:
    out = ensure_writable_dir(tmp_path / "a" / "b")
    assert out == tmp_path / "a" / "b" and out.is_dir()
    assert _names(out) == []  # the write probe leaves nothing behind
    assert ensure_writable_dir(str(out)) == out  # existing dir is fine


def test_ensure_writable_dir_under_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("I am a file")
    with pytest.raises(OutputDirError) as info:
        ensure_writable_dir(blocker / "sub", argument="--results")
    msg = str(info.value)
    assert "--results" in msg and str(blocker / "sub") in msg and "expected" in msg
    assert isinstance(info.value, OSError)


def test_ensure_writable_dir_on_existing_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputDirError, match=r"--out: .*file\.txt exists but is not a directory"):
        ensure_writable_dir(blocker)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_ensure_writable_dir_read_only(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputDirError, match="not writable"):
            ensure_writable_dir(ro)
    finally:
        ro.chmod(0o700)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a checkpoint" * 20, "truncated", "plain-pickle"],
)
def test_safe_torch_load_corrupt_files(tmp_path: Path, content) -> None:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.randn(50, 50)}, good)
    if content == "truncated":
        content = good.read_bytes()[: good.stat().st_size // 2]
    elif content == "plain-pickle":
        import pickle

        content = pickle.dumps({"a": 1})
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        safe_torch_load(bad)


class _Malicious:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_safe_torch_load_never_runs_pickled_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"payload": _Malicious(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt") as info:
        safe_torch_load(tmp_path / "evil.pt")
    assert "weights_only=False" not in str(info.value)  # no advice to disable the guard
    assert not marker.exists()


def test_safe_torch_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        safe_torch_load(tmp_path / "nope.pt")
