"""Running one experiment into an output folder: the folder's lock and state, the checkpoints
to resume, provenance, and ``results.json``.

[`run_experiment`][hyperlab.experiments.runner.run_experiment] is the one way a run happens (the
CLI and the tests call it). One run at a
time writes into an ``--out``: a lock held for the whole run
([`out_dir_lock`][hyperlab.experiments.runner.out_dir_lock]) refuses a
second one, naming the holder; a lock left by a killed run is taken over and said so. A run
sweeps the temporary files an interrupted write left behind, refuses a folder holding another
run's results (or a results.json it cannot read) unless ``overwrite``, and leaves no new folder
behind when it fails before writing anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import filelock
import torch

import hyperlab
from hyperlab.experiments.base import (
    PLUS_MINUS,
    RESULTS_NAME,
    Experiment,
    RunContext,
    RunStateError,
    get_experiment,
)
from hyperlab.experiments.config import Config
from hyperlab.experiments.scale import paper_scale
from hyperlab.io import (
    CheckpointError,
    atomic_write_json,
    ensure_writable_dir,
    remove_temp_files,
    safe_torch_load,
)
from hyperlab.runtime import cpu_model, num_threads, resolve_device

__all__ = ["LOCK_NAME", "OutDirLockedError", "config_hash", "out_dir_lock", "run_experiment"]

#: the lock file of an output folder, and the file naming its holder
LOCK_NAME = ".hyperlab.lock"
_HOLDER_NAME = ".hyperlab.lock.json"


class OutDirLockedError(RunStateError):
    """Another run is writing into this output folder now."""


def config_hash(name: str, config: Config, seed: int, selects: Sequence[str] = ()) -> str:
    """Short hash of what a run's trained models depend on: experiment, resolved config (less
    the ``selects`` fields,
    ``Experiment.selects``), seed and hyperlab's
    version.
    Checkpoints live under ``checkpoints/<hash>``, so a run never resumes models trained under
    another config or version."""
    cfg = {k: v for k, v in config.to_dict().items() if k not in selects}
    blob = json.dumps([name, cfg, int(seed), hyperlab.__version__], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _read_holder(out: Path) -> dict[str, Any]:
    try:
        info = json.loads((out / _HOLDER_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


@contextlib.contextmanager
def out_dir_lock(out: Path, command: str | None = None) -> Iterator[dict[str, Any] | None]:
    """Hold ``out``'s lock for the block; yields the holder a killed run left behind (its PID
    and command, taken over) or None. A live holder raises
    [`OutDirLockedError`][hyperlab.experiments.runner.OutDirLockedError] naming
    its PID and command (the lock is an OS file lock, released when its process dies)."""
    lock = filelock.FileLock(str(out / LOCK_NAME), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = _read_holder(out)
        who = f"PID {holder.get('pid', '?')} ({holder.get('command') or 'command unknown'}, " \
              f"since {holder.get('started', '?')})"  # fmt: skip
        raise OutDirLockedError(
            f"--out {out}: another run is writing into this folder now: {who}; wait for it to "
            "finish, or choose another --out"
        ) from None
    try:
        left = _read_holder(out)  # a run that ended normally removed it: a killed one's
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        atomic_write_json(out / _HOLDER_NAME, info, what="the run's lock record")
        yield left or None
    finally:
        with contextlib.suppress(OSError):
            (out / _HOLDER_NAME).unlink()
        lock.release()


def _check_out_dir(out: Path, name: str, config: Config, seed: int) -> None:
    """Refuse an ``--out`` whose results.json is another run's (experiment, seed or config),
    or cannot be read (a truncated or foreign file is named, not silently replaced)."""
    path = out / RESULTS_NAME
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise RunStateError(
            f"--out {out}: {path} cannot be read as a hyperlab results file "
            f"({type(e).__name__}: {str(e)[:80]}); it may be truncated. Pass --overwrite to "
            "replace it, or choose another --out"
        ) from None
    new = config.to_dict()
    diffs = (
        [f"experiment {old.get('experiment')} -> {name}"] if old.get("experiment") != name else []
    )
    if old.get("seed") != seed:
        diffs.append(f"seed {old.get('seed')} -> {seed}")
    cfg_old = old.get("config") or {}
    diffs += [f"{k} {json.dumps(cfg_old.get(k))} -> {json.dumps(v)}"
              for k, v in new.items() if cfg_old.get(k) != v and k in cfg_old]  # fmt: skip
    diffs += [f"{k} (new key)" for k in new if k not in cfg_old and old.get("experiment") == name]
    if diffs:
        raise RunStateError(
            f"--out {out}: holds the results of a different run ({'; '.join(diffs[:6])}); pass "
            "--overwrite to replace them, or choose another --out"
        )


def _trained_seconds(checkpoints: Sequence[Path]) -> float:
    """Training time already spent in checkpointed runs (the epochs' recorded seconds)."""
    total = 0.0
    for path in checkpoints:
        try:
            history = safe_torch_load(path).get("history", [])
        except (CheckpointError, OSError):
            continue  # fit() reports an unreadable checkpoint when it gets there
        total += sum(float(r.get("seconds", 0.0)) for r in history)
    return total


def _checkpoints(root: Path, resume: bool) -> tuple[Path, dict[str, Any] | None]:
    """This config's checkpoint folder, and what a resumed run finds there."""
    if not resume and root.exists():
        shutil.rmtree(root)
    found = sorted(root.rglob("last.pt")) if root.exists() else []
    if not found:
        return root, None
    print(f"hyperlab: resuming from {len(found)} training run(s) checkpointed in {root} "
          "(--no-resume starts over)", file=sys.stderr)  # fmt: skip
    return root, {"checkpoints": str(root), "training_runs": len(found),
                  "trained_seconds": _trained_seconds(found)}  # fmt: skip


def git_commit() -> dict[str, Any] | None:
    """The commit of the source checkout hyperlab runs from (None outside a git checkout)."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def _machine(dev: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def _peak_memory_mb() -> float | None:
    """This process's peak resident memory so far (None where the OS does not report it)."""
    try:
        import resource  # POSIX only: imported where it is used
    except ImportError:
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


def _remove_if_unused(out: Path) -> None:
    """Remove a folder this run created if nothing but empty folders is in it."""
    if not out.is_dir():
        return
    if any(p.is_file() for p in out.rglob("*") if p.name not in (LOCK_NAME, _HOLDER_NAME)):
        return
    shutil.rmtree(out, ignore_errors=True)


def run_experiment(
    name: str,
    *,
    preset: str = "full",
    out_dir: str | Path,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    command: str | None = None,
    resume: bool = True,
    overwrite: bool = False,
    checkpoints: str | Path | None = None,
) -> dict[str, Any]:
    """Run an experiment and write ``out_dir/results.json``; return that record.

    Training runs checkpoint under ``out_dir/checkpoints/<config hash>``
    ([`config_hash`][hyperlab.experiments.runner.config_hash])
    and resume from there (``resume=False`` deletes them first). An ``out_dir`` holding the
    results of another experiment, seed or config is refused unless ``overwrite``; so is one
    another run is writing into. The config's ``cpu_threads`` sets torch's CPU threads for the
    run (restored afterwards). ``command`` (the CLI line) is recorded for the reproduction
    record; ``device`` is recorded only for experiments that compute on it. ``checkpoints``
    replaces the checkpoint folder (a launcher's cells share one: `.launch`).
    """
    exp = get_experiment(name)
    cfg = exp.config(preset, overrides)
    dev = resolve_device(device)
    out = Path(out_dir).expanduser()
    created = not out.exists()  # two runs started together may both see True
    try:
        out = ensure_writable_dir(out, argument="--out")
    except BaseException:
        if created:
            _remove_if_unused(out)
        raise
    # a run refused by the lock leaves the folder alone (it is the holder's); a run that
    # fails tidies a folder it created while it still holds the lock, so no run that
    # starts meanwhile can lose its files
    with out_dir_lock(out, command) as stale:
        try:
            if stale is not None:
                print(f"hyperlab: took over the lock of --out {out} left by PID "
                      f"{stale.get('pid')} ({stale.get('command')}), which no longer runs",
                      file=sys.stderr)  # fmt: skip
            remove_temp_files(out)
            if not overwrite:
                _check_out_dir(out, name, cfg, int(seed))
            return _run_locked(exp, cfg, preset, out, int(seed), dev, data_dir, overrides,
                               progress, command, resume, checkpoints)  # fmt: skip
        except BaseException:
            if created:
                _remove_if_unused(out)
            raise


def _run_locked(exp: Experiment, cfg: Config, preset: str, out: Path, seed: int,
                dev: torch.device, data_dir: str | Path | None,
                overrides: Mapping[str, Any] | None, progress: bool, command: str | None,
                resume: bool, checkpoints: str | Path | None) -> dict[str, Any]:  # fmt: skip
    """The run itself, with ``out`` locked: resume, compute, write the record."""
    digest = config_hash(exp.name, cfg, seed, exp.selects)
    root = Path(checkpoints) if checkpoints is not None else out / "checkpoints" / digest
    ckpt_root, resumed = _checkpoints(root, resume)
    run_dev = dev if exp.uses_device else torch.device("cpu")
    ctx: RunContext[Any] = RunContext(
        name=exp.name, preset=preset, config=cfg, seed=seed, device=run_dev, out_dir=out,
        data_dir=Path(data_dir) if data_dir is not None else None, progress=progress,
        checkpoint_root=ckpt_root,
    )  # fmt: skip
    torch.manual_seed(seed)  # library defaults that draw from the global stream
    git = git_commit()  # the code that runs: read before the run, not after it
    start = time.perf_counter()
    with num_threads(cfg.cpu_threads if run_dev.type == "cpu" else None):
        machine = _machine(run_dev)
        result = exp.run(ctx)
    record = {
        "experiment": exp.name, "paper": str(exp.paper), "arxiv": exp.paper.arxiv,
        "reproduces": exp.reproduces, "summary": exp.summary, "preset": preset, "seed": seed,
        "device": str(run_dev), "config": cfg.to_dict(), "config_hash": digest,
        "scale": paper_scale(cfg, exp.paper_sizes),
        "overrides": dict(overrides or {}), "resumed_from": resumed, "metrics": result.metrics,
        "paper_reference": dict(exp.paper_reference),
        "claims": [c.to_dict() for c in result.claims],
        "comparison": [list(r) for r in result.comparison], "plus_minus": PLUS_MINUS,
        "notes": result.notes, "figures": result.figures,
        "wall_seconds": round(time.perf_counter() - start, 2),
        "peak_memory_mb": _peak_memory_mb(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command, "git": git, "machine": machine,
        "versions": {"hyperlab": hyperlab.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }  # fmt: skip
    atomic_write_json(out / RESULTS_NAME, record, what="the run's results")  # NaN/inf -> null
    return record
