"""The runner: one run per output folder (a lock), stale temp files, unreadable results,
nothing left behind by a run that fails before it writes anything, errors that name the path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hyperlab.cli import main
from hyperlab.experiments.runner import LOCK_NAME, OutDirLockedError, run_experiment

TINY = ["--preset", "tiny", "--no-progress", "--set", "depths=[2]", "seeds=1", "epochs=1"]


def _argv(out: Path, *extra: str) -> list[str]:
    return ["run", "modularity-synthetic-depth", "--out", str(out), *TINY, *extra]


def _hold_lock(out: Path) -> subprocess.Popen:
    """A second process that takes ``out``'s lock and waits (until it is killed)."""
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from hyperlab.experiments.runner import out_dir_lock
        out = Path({str(out)!r}); out.mkdir(parents=True, exist_ok=True)
        with out_dir_lock(out, "hyperlab run other --out elsewhere"):
            print("locked", flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_into_the_same_out_is_refused_then_a_dead_holder_is_taken_over(
    tmp_path, capsys
):
    out = tmp_path / "o"
    holder = _hold_lock(out)
    try:
        assert main(_argv(out)) == 2
        err = capsys.readouterr().err
        assert f"PID {holder.pid}" in err and "hyperlab run other --out elsewhere" in err
        assert "another run is writing into this folder" in err
        assert not (out / "results.json").exists()
        with pytest.raises(OutDirLockedError):
            run_experiment("modularity-synthetic-depth", preset="tiny", out_dir=out,
                           progress=False)  # fmt: skip
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed run: its lock record stays behind
        holder.wait()
    assert main(_argv(out)) == 0
    err = capsys.readouterr().err
    assert f"took over the lock of --out {out} left by PID {holder.pid}" in err
    assert (out / "results.json").is_file()
    assert not (out / ".hyperlab.lock.json").exists()  # released at the end of the run


def test_two_runs_started_together_never_both_write(tmp_path):
    out = tmp_path / "o"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmds = [[sys.executable, "-m", "hyperlab.cli", *_argv(out, "--seed", str(s))]
            for s in (0, 1)]  # fmt: skip
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in cmds]  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    # one wins; the other is refused, either by the lock or (if the first had already
    # finished) because the folder now holds another seed's results
    assert sorted(codes) == [0, 2], results
    loser = results[codes.index(2)][1]
    assert "another run is writing" in loser or "holds the results of a different run" in loser
    record = json.loads((out / "results.json").read_text())
    assert record["seed"] == codes.index(0)


def test_a_run_refused_by_the_lock_leaves_the_holders_new_folder_alone(tmp_path, monkeypatch):
    # the race CI once lost: both runs saw no folder; the one refused by the lock then
    # removed the (still empty) folder the winner had just created and locked
    import filelock

    from hyperlab.experiments import runner

    out = tmp_path / "o"
    winner = filelock.FileLock(str(out / LOCK_NAME), timeout=0, thread_local=False)
    real = runner.ensure_writable_dir

    def winner_gets_there_first(path, **kw):
        p = real(path, **kw)
        winner.acquire()
        return p

    monkeypatch.setattr(runner, "ensure_writable_dir", winner_gets_there_first)
    try:
        with pytest.raises(OutDirLockedError):
            run_experiment("modularity-synthetic-depth", preset="tiny", out_dir=out,
                           progress=False)  # fmt: skip
        assert (out / LOCK_NAME).is_file()  # the winner's folder and lock are still there
    finally:
        winner.release()


def test_stale_temp_files_are_swept_when_a_run_starts(tmp_path):
    out = tmp_path / "o"
    assert main(_argv(out)) == 0
    ckpt_dir = next(out.rglob("last.pt")).parent
    stale = [ckpt_dir / ".history.csv.abc123.tmp", out / ".results.json.x.tmp"]
    for p in stale:
        p.write_text("partial")
    assert main(_argv(out)) == 0  # resumes the finished run, writes nothing new there
    assert not any(p.exists() for p in stale)


@pytest.mark.parametrize("content", ['{"experiment": "modul', "", "[1, 2]"])
def test_an_unreadable_results_json_is_named_and_kept_unless_overwrite(tmp_path, capsys, content):
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text(content)
    assert main(_argv(out)) == 2
    err = capsys.readouterr().err
    assert "results.json cannot be read as a hyperlab results file" in err and "--overwrite" in err
    assert (out / "results.json").read_text() == content
    assert main(_argv(out, "--overwrite")) == 0
    assert json.loads((out / "results.json").read_text())["experiment"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "epochs=0"], "epochs"),
        (["--device", "tpu"], "--device"),
        (["--data-dir", "{missing}"], "not found under data root"),
    ],
)
def test_an_error_before_the_run_leaves_no_new_folder(tmp_path, capsys, extra, message):
    out = tmp_path / "new" / "o"
    extra = [e.format(missing=tmp_path / "nodata") for e in extra]
    argv = ["run", "modularity-rotation", "--out", str(out), "--preset", "tiny",
            "--no-progress", *extra]  # fmt: skip
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_data_dir_that_is_a_file_is_named_as_such(tmp_path, capsys):
    f = tmp_path / "data.txt"
    f.write_text("not a folder")
    argv = ["run", "modularity-rotation", "--out", str(tmp_path / "o"), "--preset", "tiny",
            "--no-progress", "--data-dir", str(f)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--data-dir: {f} is a file, not a folder" in err


def test_a_failed_write_names_the_path_and_what(tmp_path, monkeypatch, capsys):
    import hyperlab.io as hio

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    out = tmp_path / "o"
    assert main(_argv(out)) == 0
    monkeypatch.setattr(hio.os, "fsync", full)
    assert main(_argv(out)) == 2
    err = capsys.readouterr().err
    assert "writing" in err and str(out) in err and "No space left on device" in err


def test_the_lock_file_is_the_only_thing_left_and_it_is_hidden(tmp_path):
    out = tmp_path / "o"
    assert main(_argv(out)) == 0
    hidden = {p.name for p in out.iterdir() if p.name.startswith(".")}
    assert hidden <= {LOCK_NAME}
    time.sleep(0)  # nothing else to wait for
