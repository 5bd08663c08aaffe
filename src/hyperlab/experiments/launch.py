"""Sweeps beyond one machine: ``hyperlab run NAME --launcher submitit`` sends the sweep's
independent cells as a submitit job array (Slurm where ``srun`` exists, submitit's local
executor otherwise), then merges them into the ``results.json`` the one-process run writes.

A cell is the run restricted to one value of the experiment's first swept field (its first
list-valued ``selects`` field: the depths, the
dimensions, the learning rates...). Every cell trains into the same ``--out/checkpoints/<config
hash>`` folder (the swept fields are out of the hash, the checkpoint keys name the value), with
its own lock and record under ``--out/cells/``; the merge then runs the whole config in
``--out``, finds every model trained and only scores them, so its record is the one-process
run's. Needs the optional dependency ``hyperlab[slurm]`` (submitit).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperlab.experiments.base import get_experiment
from hyperlab.experiments.config import Config, ConfigError, param
from hyperlab.experiments.runner import config_hash, run_experiment

__all__ = ["LauncherConfig", "cells", "launch"]


@dataclass(frozen=True)
class LauncherConfig(Config):
    """submitit's settings for the cells' jobs (``--launcher-set key=value``)."""

    cluster: str = param("auto", "auto (Slurm where srun exists, else local processes), slurm, "
                         "local or debug (in this process)",
                         choices=("auto", "slurm", "local", "debug"))  # fmt: skip
    timeout_min: int = param(60, "wall-clock limit per cell job, minutes", min=1)
    cpus_per_task: int = param(1, "CPU cores per cell job", min=1)
    gpus_per_node: int = param(0, "GPUs per cell job", min=0)
    mem_gb: float = param(8.0, "memory per cell job, GB", positive=True)
    partition: str | None = param(None, "Slurm partition (None: the cluster's default)")
    array_parallelism: int = param(64, "cell jobs running at once (Slurm)", min=1)


def cells(name: str, preset: str, overrides: Mapping[str, Any]) -> tuple[str | None, list]:
    """The swept field and its values (one cell each); (None, []) when nothing is swept."""
    exp = get_experiment(name)
    cfg = exp.config(preset, overrides)
    for key in exp.selects:
        values = getattr(cfg, key)
        if isinstance(values, list):
            return key, list(values)
    return None, []


def _cell(name: str, preset: str, out: str, overrides: dict[str, Any], seed: int, device: str,
          data_dir: str | None, checkpoints: str) -> str:  # fmt: skip
    """One cell job: the run with one swept value, checkpointing into the shared folder."""
    record = run_experiment(name, preset=preset, out_dir=out, seed=seed, device=device,
                            data_dir=data_dir, overrides=overrides, progress=False,
                            checkpoints=checkpoints)  # fmt: skip
    return str(record["config_hash"])


def _executor(folder: Path, launcher: LauncherConfig) -> Any:
    try:
        import submitit  # optional: the hyperlab[slurm] extra
    except ImportError:
        raise ConfigError("--launcher submitit: submitit is not installed; pip install "
                          "'hyperlab[slurm]'") from None  # fmt: skip
    cluster = None if launcher.cluster == "auto" else launcher.cluster
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": launcher.timeout_min,
                              "cpus_per_task": launcher.cpus_per_task,
                              "mem_gb": launcher.mem_gb, "name": "hyperlab"}  # fmt: skip
    if launcher.gpus_per_node:
        params["gpus_per_node"] = launcher.gpus_per_node
    if ex.cluster == "slurm":
        params["slurm_array_parallelism"] = launcher.array_parallelism
        if launcher.partition:
            params["slurm_partition"] = launcher.partition
    ex.update_parameters(**params)
    return ex


def launch(name: str, *, preset: str, out_dir: str | Path, overrides: Mapping[str, Any],
           launcher: LauncherConfig, seed: int = 0, device: str = "cpu",
           data_dir: str | Path | None = None, command: str | None = None,
           progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Run ``name``'s cells as a job array, wait for them, merge; return the merged record."""
    exp = get_experiment(name)
    cfg = exp.config(preset, overrides)  # a bad override fails here, before any job
    key, values = cells(name, preset, overrides)
    out = Path(out_dir).expanduser()
    ckpt = out / "checkpoints" / config_hash(name, cfg, seed, exp.selects)
    if key is not None and len(values) > 1:
        ex = _executor(out / "submitit", launcher)
        with ex.batch():
            jobs = [ex.submit(_cell, name, preset, str(out / "cells" / f"{key}-{v}"),
                              {**overrides, key: [v]}, seed, device,
                              None if data_dir is None else str(data_dir), str(ckpt))
                    for v in values]  # fmt: skip
        print(f"hyperlab: {len(jobs)} cell job(s) ({key} = {values}) on {ex.cluster}; logs in "
              f"{out / 'submitit'}", file=sys.stderr)  # fmt: skip
        for job in jobs:
            job.result()  # a failed cell raises here, naming its job
    return run_experiment(name, preset=preset, out_dir=out, seed=seed, device=device,
                          data_dir=data_dir, overrides=overrides, progress=progress,
                          command=command)  # fmt: skip
