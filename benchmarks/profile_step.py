"""Where one hyperlab training step spends its time: torch.profiler over the rotation
hypernetwork step of ``hypernet_step.py`` (fused first layer, SGD), top operators by self time.

    .venv/bin/python benchmarks/profile_step.py --threads 1 [--materialised]
"""

from __future__ import annotations

import argparse

import torch
from hypernet_step import build, contenders, data, make_step
from torch.profiler import ProfilerActivity, profile


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--materialised", action="store_true")
    p.add_argument("--rows", type=int, default=15)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x, cond, y = data(a.batch)
    model = build()
    kind = "hyperlab materialised" if a.materialised else "hyperlab fused"
    step = make_step(*contenders(model)[kind], x, cond, y)
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            step()
    print(f"{kind}, {a.threads} thread(s), {a.steps} steps")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))


if __name__ == "__main__":
    main()
