"""Safe file writing and checkpoint loading.

Every file hyperlab writes (checkpoints, results JSON, figures' data) goes through the
``atomic_*`` helpers: the payload is written to a temporary file in the target's directory,
flushed and fsync'ed, then moved over the target with ``os.replace``. A
crash or an
exception mid-write therefore never leaves a truncated file behind, and the previous version
of the target (if any) stays intact. Temporary files are named ``.<name>.<random>.tmp`` and
are removed on failure.
"""

from __future__ import annotations

import glob
import json
import math
import os
import pickle
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "CheckpointError",
    "OutputDirError",
    "WriteError",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "ensure_writable_dir",
    "remove_temp_files",
    "safe_torch_load",
    "to_jsonable",
]

PathLike = str | os.PathLike


class OutputDirError(OSError):
    """An output directory could not be created or is not writable."""


class CheckpointError(RuntimeError):
    """A file is not a readable checkpoint (corrupt, truncated, or not written by torch.save)."""


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once at import, before threads exist.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class WriteError(OSError):
    """A file could not be written; the message names the path and what was being written."""


def _atomic_write(path: PathLike, write: Callable[[IO[bytes]], None], what: str) -> Path:
    """Run ``write(fileobj)`` on a temp file next to ``path``, then atomically replace ``path``.

    The parent directory is created if missing. The new file gets the mode of the file it
    replaces, or the usual ``0o666 & ~umask`` for a new file (not the 0600 of a temp file).
    An OS error (disk full, permissions) is re-raised as [`WriteError`][hyperlab.io.WriteError]
    naming ``path``
    and ``what``; the previous file stays as it was.
    """
    target = Path(path)
    tmp_path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        tmp = tempfile.NamedTemporaryFile(
            mode="w+b", dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
        )
        tmp_path = Path(tmp.name)
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, target)
    except BaseException as e:
        if tmp_path is not None:
            try:
                tmp_path.unlink()
            except FileNotFoundError:
                pass
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            reason = e.strerror or str(e)
            raise WriteError(e.errno, f"writing {what} to {target} failed: {reason}") from e
        raise
    _fsync_dir(target.parent)
    _remove_stale_temps(target)
    return target


def remove_temp_files(folder: PathLike) -> int:
    """Delete every temp file an interrupted atomic write left anywhere under ``folder``;
    returns how many. Only for a folder no one else writes into now (a run holds its lock)."""
    removed = 0
    for old in Path(folder).rglob(".*.tmp"):
        try:
            if old.is_file():
                old.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def _remove_stale_temps(target: Path, min_age_s: float = 60.0) -> None:
    """Delete temp files an interrupted write of ``target`` left behind (older than a minute,
    so a concurrent writer's live temp file is never touched)."""
    now = time.time()
    for old in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        try:
            if now - old.stat().st_mtime > min_age_s:
                old.unlink()
        except OSError:
            pass


def atomic_write_bytes(path: PathLike, data: bytes, *, what: str = "a file") -> Path:
    """Atomically write ``data`` to ``path``; returns the path."""

    def write(f: IO[bytes]) -> None:
        f.write(data)

    return _atomic_write(path, write, what)


def atomic_write_text(
    path: PathLike, text: str, *, encoding: str = "utf-8", what: str = "a file"
) -> Path:
    """Atomically write ``text`` to ``path`` (UTF-8 by default); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding), what=what)


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types.

    NaN and +-inf become ``None`` (JSON has no such numbers; ``null`` keeps the file valid
    for every JSON reader). Tensors and NumPy arrays/scalars become (nested) lists/numbers,
    tuples become lists, paths become strings, mapping keys become strings.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
        return to_jsonable(obj.tolist())
    raise TypeError(f"cannot write an object of type {type(obj).__name__} to JSON: {obj!r:.80}")


def atomic_write_json(path: PathLike, obj: Any, *, what: str = "a JSON file") -> Path:
    """Atomically write ``obj`` as indented JSON (2 spaces, trailing newline).

    Non-finite floats (NaN, inf) are written as ``null``; see
    [`to_jsonable`][hyperlab.io.to_jsonable] for the
    other conversions. Serialisation happens before anything touches the disk, so an
    unserialisable object leaves no trace.
    """
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text, what=what)


def atomic_torch_save(obj: Any, path: PathLike, *, what: str = "a checkpoint") -> Path:
    """Atomically ``torch.save(obj)`` to ``path``; returns the path."""
    return _atomic_write(path, lambda f: torch.save(obj, f), what)


def ensure_writable_dir(path: PathLike, *, argument: str = "--out") -> Path:
    """Create directory ``path`` (with parents) and check that a file can be written in it.

    Raises [`OutputDirError`][hyperlab.io.OutputDirError] naming ``argument`` and the path
    otherwise. Writability
    is probed by really creating (and deleting) a file, which is reliable also as root.
    """
    p = Path(path).expanduser()
    expected = "expected a directory that exists or can be created, and is writable"
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputDirError(f"{argument}: {p} exists but is not a directory; {expected}") from None
    except OSError as e:
        reason = e.strerror or str(e)
        raise OutputDirError(
            f"{argument}: cannot create directory {p} ({reason}); {expected}"
        ) from e
    try:
        with tempfile.TemporaryFile(dir=p, prefix=".write-test."):
            pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise OutputDirError(
            f"{argument}: directory {p} is not writable ({reason}); {expected}"
        ) from e
    return p


def _error_detail(e: BaseException) -> str:
    """One short line describing why torch.load failed."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if isinstance(e, pickle.UnpicklingError):
        # torch's message starts with advice to use weights_only=False: not what we want said.
        hint = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), "")
        return (
            "it holds Python objects other than tensors/containers, refused "
            f"without unpickling them. {hint}"
        ).strip()
    first = lines[0].split(". ")[0][:160] if lines else ""
    return f"{type(e).__name__}: {first}".rstrip(": ")


def safe_torch_load(path: PathLike) -> Any:
    """Load a ``torch.save`` file onto the CPU without ever executing pickled code.

    Uses ``weights_only=True``: only tensors, containers and plain Python values load.
    A corrupt, truncated or non-torch file (or one that would need arbitrary code to
    unpickle) raises [`CheckpointError`][hyperlab.io.CheckpointError] naming the file. A missing or
    unreadable file
    raises the usual ``FileNotFoundError``/``PermissionError``.
    """
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        RuntimeError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        ImportError,
        IndexError,
        UnicodeDecodeError,
        OSError,
    ) as e:
        detail = _error_detail(e)
        raise CheckpointError(
            f"{p}: not a readable checkpoint ({detail}); "
            "the file is corrupt, truncated, or was not written by torch.save with plain "
            "tensors/containers. Delete it or point to another file."
        ) from e
