"""The command line, end to end on a tiny config."""

import json

import pytest

from hyperlab.cli import main


def test_list_names_each_experiment_with_its_figure(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "modularity-synthetic-depth" in out and "Fig. 1a" in out


def test_run_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "modularity-synthetic-depth",
            "--preset",
            "tiny",
            "--out",
            str(out),
            "--seed",
            "3",
            "--no-progress",
            "--set",
            "epochs=1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "paper" in printed and "hyperlab (this run)" in printed
    record = json.loads((out / "results.json").read_text())
    assert record["experiment"] == "modularity-synthetic-depth"
    assert record["config"]["epochs"] == 1 and record["seed"] == 3
    assert record["paper_reference"]["claims"]
    for fig in record["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.tmp*"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
        (
            ["run", "modularity-synthetic-depth", "--preset", "tiny", "--set", "nope=1"],
            "--set nope",
        ),
        (["run", "modularity-synthetic-depth", "--preset", "tiny", "--set", "epochs"], "key=value"),
        (["run", "modularity-synthetic-depth", "--preset", "tiny", "--device", "tpu"], "--device"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_unwritable_out_dir_is_named(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["run", "modularity-synthetic-depth", "--preset", "tiny", "--out", str(blocker / "o")]
    assert main(argv) == 2
    assert "--out" in capsys.readouterr().err


def test_data_download_verifies_the_files(data_root, capsys):
    assert main(["data", "download", "mnist", "--data-dir", str(data_root)]) == 0
    assert "mnist: 4 files verified (size and MD5)" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("hyperlab 0.")


def test_no_preset_runs_quick_and_says_so_and_full_prints_its_cost(tmp_path, capsys, monkeypatch):
    import hyperlab.cli as cli

    seen = {}

    def fake_run(name, **kw):  # the presets are what is checked, not the (long) runs
        seen["preset"] = kw["preset"]
        raise ValueError("stop here")

    monkeypatch.setattr(cli, "run_experiment", fake_run)
    assert main(["run", "modularity-rotation", "--out", str(tmp_path / "o")]) == 2
    assert seen["preset"] == "quick"
    assert "no --preset given: running the quick preset" in capsys.readouterr().err
    assert main(["run", "modularity-rotation", "--preset", "full", "--out", str(tmp_path)]) == 2
    assert seen["preset"] == "full"
    err = capsys.readouterr().err
    assert "the full preset: 80 training runs of 10 epochs" in err
    assert "every size the paper states is met (a paper-scale run)" in err
    assert main(["run", "modularity-synthetic-depth", "--preset", "full", "--out",
                 str(tmp_path)]) == 2  # fmt: skip
    assert "below the paper's sizes (a reduced run): seeds 5 (the paper: 100)" in (
        capsys.readouterr().err
    )


def test_the_recorded_command_has_paths_relative_to_the_working_directory(tmp_path, monkeypatch):
    from hyperlab.cli import command_line

    monkeypatch.chdir(tmp_path)
    line = command_line(["run", "x", "--out", str(tmp_path / "runs" / "a"),
                         f"--data-dir={tmp_path / 'data'}", "--set", "lr=0.1"])  # fmt: skip
    assert line == "hyperlab run x --out runs/a --data-dir=data --set lr=0.1"
    assert str(tmp_path) not in line
    assert command_line(["run", "x", "--out", "rel/b"]) == "hyperlab run x --out rel/b"


def test_a_solver_that_does_not_converge_is_one_line(tmp_path, capsys, monkeypatch):
    import hyperlab.cli as cli
    from hyperlab.kernels import NotConvergedError

    def fake_run(name, **kw):
        lines = ["CG reached relative residual 3e-3 > tol 1e-6 after 10 iterations",
                 "raise max_iter or the preconditioner rank"]  # fmt: skip
        raise NotConvergedError("\n".join(lines))

    monkeypatch.setattr(cli, "run_experiment", fake_run)
    assert main(["run", "infinite-width-representation", "--preset", "tiny", "--out",
                 str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("hyperlab: error: CG reached relative residual")
    assert "Traceback" not in err
