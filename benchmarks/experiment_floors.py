"""What the training experiments achieve: each one's training step at its full preset (the
models the experiment builds, at its batch size, one model; the experiments that stack seeds
stack several of these), its FLOPs, the time per epoch its steps take, and the FLOP floor at
the GEMM rate measured in the same run (square float32 matmul, same threads). Writes the
Markdown table to ``--out`` (docs/performance.md) and prints it.

FLOPs: torch's FlopCounterMode over one forward and backward (matmuls and convolutions); for
the generating step, 3 × its forward count, because FlopCounterMode's count of a grouped
convolution's backward is wrong (~18× too high) and the first convolution needs no input
gradient (so 3× is an upper bound there). Only the training step is timed: data preparation
and evaluation are outside it (their share of an epoch is named in the last column).

    .venv/bin/python benchmarks/experiment_floors.py --threads 1 --out docs/performance.md
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hyperlab import ConvNet
from hyperlab.data import rotation_batch
from hyperlab.experiments.base import get_experiment
from hyperlab.experiments.infinite_width.dynamics import build_model
from hyperlab.experiments.modularity.images import rotation_builders
from hyperlab.experiments.modularity.synthetic_depth import builders
from hyperlab.generative import GenerativeHyperNetwork, generative_loss
from hyperlab.io import atomic_write_text
from hyperlab.runtime import cpu_model, keep_freed_memory, median_seconds


@dataclass
class Case:
    """One step to time: FlopCounterMode runs ``counted`` (× ``multiplier``); ``keep``: timed
    inside keep_freed_memory(), as the experiment runs it."""

    experiment: str
    model: str
    counted: Callable[[], None]
    multiplier: float
    step: Callable[[], None]
    steps_per_epoch: int
    outside: str
    keep: bool = False


def _classifier_step(model: nn.Module, batch: dict, lr: float, regression: bool = False):
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def loss() -> torch.Tensor:
        out = model(batch["x"], batch["cond"])
        if regression:
            return nn.functional.mse_loss(out.squeeze(-1), batch["y"])
        return nn.functional.cross_entropy(out, batch["y"])

    def fwd_bwd() -> None:
        opt.zero_grad(set_to_none=True)
        loss().backward()

    def step() -> None:
        fwd_bwd()
        opt.step()

    return fwd_bwd, 1.0, step


def rotation_cases(gen: torch.Generator) -> list[Case]:
    cfg = get_experiment("modularity-rotation").config("full")
    images = torch.randint(0, 256, (cfg.batch_size, 28, 28), dtype=torch.uint8, generator=gen)
    batch = {k: v for k, v in rotation_batch(images, gen).items() if k != "angle"}
    steps = 60_000 // cfg.batch_size
    out = []
    for kind, build in rotation_builders(cfg).items():
        for k in (2, 9):
            model = build(k, torch.Generator().manual_seed(0))
            fwd_bwd, mult, step = _classifier_step(model, batch, cfg.lr)
            out.append(Case("modularity-rotation (Fig. 3)", f"{kind}, k = {k}", fwd_bwd, mult,
                            step, steps, "rotation per batch"))  # fmt: skip
    return out


def synthetic_cases(gen: torch.Generator) -> list[Case]:
    cfg = get_experiment("modularity-synthetic-depth").config("full")
    b = cfg.batch_size
    batch = {"x": torch.rand(b, cfg.d_x, generator=gen), "cond": torch.rand(b, cfg.d_i,
             generator=gen), "y": torch.randn(b, generator=gen)}  # fmt: skip
    out = []
    for kind, build in builders(cfg).items():
        model = build(5, torch.Generator().manual_seed(0))
        out.append(Case("modularity-synthetic-depth (Fig. 1a)", f"{kind}, k = 5, d = 1000",
                    *_classifier_step(model, batch, cfg.lr, regression=True),
                    cfg.n_train // b, "none (tensors in memory)"))  # fmt: skip
    return out


def dynamics_cases(gen: torch.Generator) -> list[Case]:
    cfg = get_experiment("infinite-width-dynamics").config("full")
    images = torch.randint(0, 256, (cfg.batch_size, 28, 28), dtype=torch.uint8, generator=gen)
    batch = {k: v for k, v in rotation_batch(images, gen).items() if k != "angle"}
    out = []
    for depth, width in ((3, 100), (8, 100)):
        model = build_model(cfg, 784, depth, width, torch.Generator().manual_seed(0))
        out.append(Case("infinite-width-dynamics (Fig. 2)", f"g depth {depth}, width {width}",
                    *_classifier_step(model, batch, cfg.lr), cfg.n_train // cfg.batch_size,
                    "test accuracy every epoch", keep=True))  # fmt: skip
    return out


def generating_case(gen: torch.Generator) -> list[Case]:
    cfg = get_experiment("generating-mnist").config("full")
    b, n = cfg.noise_batch, cfg.images_per_noise
    images = torch.rand(b, n, 1, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (b, n), generator=gen)
    z = torch.rand(b, cfg.noise_dim, generator=gen) * 2 - 1
    model = GenerativeHyperNetwork(ConvNet(), cfg.noise_dim, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def forward() -> None:
        with torch.no_grad():
            generative_loss(model, images, labels, lam=1e3, z=z)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        generative_loss(model, images, labels, lam=1e3, z=z)[0].backward()
        opt.step()

    return [Case("generating-mnist (Figs. 2-9)", f"{b} networks x {n} images", forward, 3.0, step,
                 cfg.n_train // (b * n), "none in the step; analyses after training",
                 keep=True)]  # fmt: skip


def flops(case: Case) -> float:
    """FLOPs of one step: FlopCounterMode over the case's counted call, times its multiplier."""
    counter = FlopCounterMode(display=False)
    with counter:
        case.counted()
    return case.multiplier * counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    ap.add_argument("--note", default="", help="a sentence on the machine's load, for the page")
    ap.add_argument("--plain-allocator", action="store_true",
                    help="time every step without keep_freed_memory()")  # fmt: skip
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(2048, 2048, generator=gen)
    gemm = 2 * 2048**3 / median_seconds(lambda: m @ m, repeats=a.repeats) / 1e9
    cases = rotation_cases(gen) + synthetic_cases(gen) + dynamics_cases(gen) + generating_case(gen)
    head = (f"CPU: {cpu_model()}; {a.threads} thread(s); square float32 GEMM "
            f"{gemm:.1f} GFLOP/s (the floor's rate)")  # fmt: skip
    lines = [head, "", "| experiment | model | GFLOP/step | ms/step | steps/epoch | s/epoch "
             "(steps) | floor s/epoch | of the floor | outside the step |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for case in cases:
        gf = flops(case) / 1e9
        keep = case.keep and not a.plain_allocator
        with keep_freed_memory() if keep else contextlib.nullcontext():
            sec = median_seconds(case.step, repeats=a.repeats)
        floor, steps = gf / gemm, case.steps_per_epoch
        lines.append(f"| {case.experiment} | {case.model} | {gf:.2f} | {sec * 1e3:.1f} | {steps} "
                     f"| {sec * steps:.1f} | {floor * steps:.1f} | {floor / sec:.0%} | "
                     f"{case.outside} |")  # fmt: skip
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        atomic_write_text(Path(a.out), _page(text, a), what="the performance table")


def _page(table: str, a: argparse.Namespace) -> str:
    return (
        "# Performance\n\nEach training experiment's step at its full preset against its FLOP "
        "floor (FLOPs ÷ the measured GEMM rate). Made by\n`.venv/bin/python "
        f"benchmarks/experiment_floors.py --threads {a.threads} --out docs/performance.md`; "
        "see the script's docstring for how FLOPs are counted. Goal (issue 25): at least 50 % "
        "of the floor for every step of 1 GFLOP or more.\n\n"
        + (f"{a.note}\n\n" if a.note else "")
        + table
    )


if __name__ == "__main__":
    main()
