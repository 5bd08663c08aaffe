"""Command line: ``hyperlab list | show NAME | run NAME | rejudge DIR... | report DIR...``."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap
from collections.abc import Sequence

import hyperlab
from hyperlab.data import fetch_dataset
from hyperlab.experiments.base import (
    UnknownExperimentError,
    describe_experiment,
    discover,
    format_comparison,
    get_experiment,
)
from hyperlab.experiments.claims import format_evidence
from hyperlab.experiments.config import ConfigError, parse_overrides
from hyperlab.experiments.launch import LauncherConfig, launch
from hyperlab.experiments.rejudge import rejudge
from hyperlab.experiments.runner import run_experiment
from hyperlab.experiments.scale import paper_scale
from hyperlab.io import CheckpointError
from hyperlab.kernels import NotConvergedError
from hyperlab.report import find_results, write_report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperlab",
        description="Hypernetworks on PyTorch: reproduce the papers' figures and tables.",
    )
    p.add_argument("--version", action="version", version=f"hyperlab {hyperlab.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments and the figure or table each reproduces")
    show = sub.add_parser("show", help="an experiment's config keys: type, value per preset, "
                          "meaning")  # fmt: skip
    show.add_argument("name", help="experiment name (see `hyperlab list`)")
    r = sub.add_parser("run", help="run one experiment; writes DIR/results.json and figures")
    r.add_argument("name", help="experiment name (see `hyperlab list`)")
    r.add_argument("--quick", action="store_true", help="scaled-down sizes (minutes on a CPU)")
    r.add_argument(
        "--preset",
        help="config preset: full (the paper's sizes), quick (the default: minutes on a CPU), "
        "tiny (seconds; what the tests run) or a named variant (see `hyperlab show NAME`)",
    )
    r.add_argument("--out", default=None, help="output directory (default runs/NAME[-quick])")
    r.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    r.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    r.add_argument("--data-dir", default=None, help="dataset folder (default $HYPERLAB_DATA)")
    r.add_argument(
        "--set",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="override config values (see `hyperlab show NAME`); repeatable",
    )
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    r.add_argument(
        "--no-resume",
        action="store_true",
        help="start every training run afresh (deletes this config's checkpoints)",
    )
    r.add_argument("--overwrite", action="store_true",
                   help="replace the results of a different run in --out")  # fmt: skip
    r.add_argument(
        "--dataset",
        default=None,
        help="dataset of an image experiment: mnist, fashion-mnist or cifar10 "
        "(same as --set dataset=NAME)",
    )
    r.add_argument("--launcher", choices=("none", "submitit"), default="none",
                   help="submitit: the sweep's cells as a job array (Slurm where srun exists, "
                   "else local processes), merged into --out")  # fmt: skip
    r.add_argument("--launcher-set", action="extend", nargs="+", metavar="KEY=VALUE",
                   help="submitit settings: cluster, timeout_min, cpus_per_task, gpus_per_node, "
                   "mem_gb, partition, array_parallelism")  # fmt: skip
    r.add_argument(
        "--tune",
        action="store_true",
        help="give each model its own learning-rate search on a validation split before the "
        "final runs (same as --set tune=true)",
    )
    data = sub.add_parser("data", help="datasets: download and verify (MD5) MNIST, Fashion-MNIST")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    dl = data_sub.add_parser("download", help="download missing files and verify every file")
    dl.add_argument(
        "datasets",
        nargs="*",
        default=["mnist", "fashion-mnist"],
        help="mnist, fashion-mnist, cifar10 (default: the first two)",
    )
    dl.add_argument("--data-dir", default=None, help="data root (default $HYPERLAB_DATA, else "
                    "the user cache folder)")  # fmt: skip
    rj = sub.add_parser("rejudge", help="recompute the claims (and scale) of finished runs "
                        "under the current rules, from their results.json")  # fmt: skip
    rj.add_argument("dirs", nargs="+", metavar="DIR", help="run folders (or parents of them)")
    rj.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                    help="what the claims compare with (e.g. mnf_results=PATH)")  # fmt: skip
    rep = sub.add_parser("report", help="gather run folders into one Markdown page")
    rep.add_argument("dirs", nargs="+", metavar="DIR", help="run folders (or parents of them)")
    rep.add_argument("--out", default=None, help="write the page here (default: print it)")
    rep.add_argument("--title", default="hyperlab report", help="the page's heading")
    return p


def _list() -> int:
    exps = discover()
    width = max(len(n) for n in exps)
    for name in sorted(exps):
        e = exps[name]
        head = f"{name.ljust(width)}  {e.reproduces}"
        print(head if len(head) <= 98 else head[:95] + "...")
        print(textwrap.fill(e.summary, 98, initial_indent="    ", subsequent_indent="    "))
    return 0


def _show(args: argparse.Namespace) -> int:
    print(describe_experiment(get_experiment(args.name)))
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.quick and args.preset not in (None, "quick"):
        raise ValueError(f"--quick conflicts with --preset {args.preset}")
    preset = "quick" if args.quick else (args.preset or "quick")
    exp = get_experiment(args.name)
    if not args.quick and args.preset is None:
        print("hyperlab: no --preset given: running the quick preset (minutes on a CPU); "
              "--preset full runs the paper's sizes", file=sys.stderr)  # fmt: skip
    overrides = parse_overrides(args.set)
    for flag, key, value in (("--dataset", "dataset", args.dataset), ("--tune", "tune", args.tune)):
        if value in (None, False):
            continue
        if key not in exp.config_class.keys():
            raise ValueError(f"{flag}: {args.name} has no {key!r} setting")
        overrides[key] = value
    cfg = exp.config(preset, overrides)
    if preset == "full" and exp.estimate is not None:
        print(f"hyperlab: the full preset: {exp.estimate(cfg)}", file=sys.stderr)
    scale = paper_scale(cfg, exp.paper_sizes)
    if scale["below"]:
        print(f"hyperlab: below the paper's sizes (a reduced run): {'; '.join(scale['below'])}",
              file=sys.stderr)  # fmt: skip
    elif scale["scale"] == "paper":
        print("hyperlab: every size the paper states is met (a paper-scale run)",
              file=sys.stderr)  # fmt: skip
    out = args.out or f"runs/{args.name}" + ("" if preset == "full" else f"-{preset}")
    launcher_set = parse_overrides(args.launcher_set)
    if launcher_set and args.launcher == "none":
        raise ValueError("--launcher-set: needs --launcher submitit")
    if args.launcher == "submitit":
        try:
            launcher = LauncherConfig().replace(launcher_set)
        except ConfigError as e:
            raise ConfigError(f"--launcher-set {e}") from None
        record = launch(args.name, preset=preset, out_dir=out, overrides=overrides,
                        launcher=launcher, seed=args.seed, device=args.device,
                        data_dir=args.data_dir, command=args.command_line,
                        progress=not args.no_progress)  # fmt: skip
        print(format_comparison(record))
        print(f"\nresults: {out}/results.json; figures: {', '.join(record['figures'])}")
        return 0
    record = run_experiment(
        args.name,
        preset=preset,
        out_dir=out,
        seed=args.seed,
        device=args.device,
        data_dir=args.data_dir,
        overrides=overrides,
        progress=not args.no_progress,
        command=args.command_line,
        resume=not args.no_resume,
        overwrite=args.overwrite,
    )
    print(format_comparison(record))
    print(f"\nresults: {out}/results.json; figures: {', '.join(record['figures'])}")
    return 0


def _data(args: argparse.Namespace) -> int:
    for name in args.datasets:
        paths = fetch_dataset(name, args.data_dir)
        folder = next(iter(paths.values())).parent
        print(f"{name}: {len(paths)} files verified (size and MD5) in {folder}")
    return 0


def _rejudge(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.set)
    for path in find_results(args.dirs):
        flips = rejudge(path, overrides)
        print(f"{path}: {len(flips)} verdict(s) changed")
        label = {True: "held", False: "NOT held", None: "not judged"}
        for f in flips:
            c = f.claim
            why = f" ({c.not_judged})" if c.held is None and c.not_judged else ""
            print(f"  {label[f.old_held]} -> {label[c.held]}{why}: {c.claim}")
            print(f"      was: {f.old_claim}")
            print(f"      evidence: {format_evidence(c.evidence)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    text, out = write_report(args.dirs, args.out, args.title)
    if out is None:
        print(text, end="")
    else:
        print(f"report: {out}")
    return 0


#: options whose value is a path: recorded relative to the working directory
PATH_OPTIONS = ("--out", "--data-dir")


def command_line(argv: Sequence[str]) -> str:
    """The command as it can be re-run from the working directory: the values of
    [`PATH_OPTIONS`][hyperlab.cli.PATH_OPTIONS] relative to it (an absolute path names one
    machine's folders)."""
    out, prev = [], ""
    for tok in argv:
        for opt in PATH_OPTIONS:
            if prev == opt and os.path.isabs(tok):
                tok = os.path.relpath(tok)
            elif tok.startswith(f"{opt}=") and os.path.isabs(tok[len(opt) + 1 :]):
                tok = f"{opt}={os.path.relpath(tok[len(opt) + 1 :])}"
        out.append(tok)
        prev = tok
    return shlex.join(["hyperlab", *out])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hyperlab`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.command_line = command_line(argv)
    try:
        if args.command == "list":
            return _list()
        if args.command == "show":
            return _show(args)
        if args.command == "run":
            return _run(args)
        if args.command == "report":
            return _report(args)
        if args.command == "rejudge":
            return _rejudge(args)
        if args.command == "data":
            return _data(args)
    except NotConvergedError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        print(f"hyperlab: error: {'; '.join(lines)}", file=sys.stderr)
        return 2
    except CheckpointError as e:
        print(f"hyperlab: error: {e} (on the command line: --no-resume starts over)",
              file=sys.stderr)  # fmt: skip
        return 2
    except (UnknownExperimentError, ValueError, FileNotFoundError, OSError) as e:
        print(f"hyperlab: error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
