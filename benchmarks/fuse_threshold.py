"""Where fusing g's first layer into f's head starts to pay: ms per SGD step, fused vs materialised.

The modularity sweeps' hypernetwork (f: 2 hidden layers of 100 with biases, g: d-10-1, batch
200, MSE) as g's input dimension d grows. ``HyperModel(fused=None)`` fuses when g's first weight
has at least ``hyperlab.hypernet.FUSE_MIN_NUMEL`` entries (10 d here); the last line prints the
smallest d at which fused was faster in this run beside that threshold.

    .venv/bin/python benchmarks/fuse_threshold.py [--threads 1] [--dims 20,50,100,300]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from hyperlab.hypernet import FUSE_MIN_NUMEL, HyperModel
from hyperlab.primary import MLP


def ms_per_step(model: HyperModel, d: int, steps: int, repeats: int = 3) -> float:
    """Median over ``repeats`` of the mean time of ``steps`` SGD steps (after a warm-up)."""
    x, cond, y = torch.randn(200, d), torch.randn(200, d), torch.randn(200)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        loss = nn.functional.mse_loss(model(x, cond).squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(20):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dims", default="20,50,100,300")
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    first_faster = None
    print(f"{'d':>5} {'fused ms':>9} {'materialised ms':>16} {'ratio':>6}")
    for d in (int(v) for v in args.dims.split(",")):
        model = HyperModel(MLP([d, 10, 1], bias=False), d, [100, 100], init="standard")
        model.fused = True
        fused = ms_per_step(model, d, args.steps)
        model.fused = False
        materialised = ms_per_step(model, d, args.steps)
        print(f"{d:>5} {fused:>9.2f} {materialised:>16.2f} {materialised / fused:>6.2f}")
        if first_faster is None and fused < materialised:
            first_faster = d
    print(f"fused_faster_from_d={first_faster} threshold_d={FUSE_MIN_NUMEL // 10}")


if __name__ == "__main__":
    main()
