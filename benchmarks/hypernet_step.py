"""Time one training step of the MNIST rotation hypernetwork three ways, in one run.

f: the flattened 784-pixel image -> 4 hidden layers of width 200 -> all weights of
g: 784 -> 50 -> 50 -> 12 (3 layers of width 50), batch 100, SGD, cross-entropy.

1. hyperlab: per-sample weights as one batched call (``HyperModel``), with the first layer of g
   contracted against f's head (fused) and with it materialised (``fused=False``);
2. a Python loop over the samples (generate θ_i, run g on x_i, one at a time);
3. the machine's dense matmul rate (a large square GEMM), the GFLOP/s "possible".

FLOPs of a step are counted by ``torch.utils.flop_counter.FlopCounterMode`` (forward and
backward). Prints the figures and ends with ``speedup_vs_loop=<x> gflops_fraction=<y>``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hyperlab import MLP, HyperModel


def build(device: torch.device) -> HyperModel:
    torch.manual_seed(0)
    g = MLP([784, 50, 50, 12])
    return HyperModel(g, 784, [200, 200, 200, 200]).to(device)


def step_batched(model: HyperModel, opt, x, cond, y) -> None:
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x, cond), y).backward()
    opt.step()


def step_loop(model: HyperModel, opt, x, cond, y) -> None:
    opt.zero_grad(set_to_none=True)
    outs = []
    for i in range(x.shape[0]):  # the naive way: one weight set at a time
        theta = model.f(cond[i])
        outs.append(model.g(x[i : i + 1], theta))
    nn.functional.cross_entropy(torch.cat(outs), y).backward()
    opt.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(device: torch.device, n: int, repeats: int) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sec = timeit(lambda: a @ b, device, repeats)
    return 2 * n**3 / sec / 1e9


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--loop-repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--gemm-size", type=int, default=2048)
    args = p.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 784, generator=gen).to(device)
    cond = torch.randn(args.batch, 784, generator=gen).to(device)
    y = torch.randint(0, 12, (args.batch,), generator=gen).to(device)

    model = build(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch}")
    print(f"N_f={sum(p.numel() for p in model.parameters()):,} N_g={model.g.layout.numel:,}")

    model.fused = True
    t_fused = timeit(lambda: step_batched(model, opt, x, cond, y), device, args.repeats)
    flops = count_flops(lambda: step_batched(model, opt, x, cond, y))
    model.fused = False
    t_mat = timeit(lambda: step_batched(model, opt, x, cond, y), device, args.repeats)
    flops_mat = count_flops(lambda: step_batched(model, opt, x, cond, y))
    model.fused = True
    t_loop = timeit(lambda: step_loop(model, opt, x, cond, y), device, args.loop_repeats, warmup=1)
    peak = matmul_gflops(device, args.gemm_size, max(3, args.repeats // 4))

    best = min(t_fused, t_mat)
    achieved = (flops if t_fused <= t_mat else flops_mat) / best / 1e9
    rows = [
        ("hyperlab, fused first layer", t_fused, flops / t_fused / 1e9),
        ("hyperlab, materialised weights", t_mat, flops_mat / t_mat / 1e9),
        ("python loop over samples", t_loop, flops / t_loop / 1e9),
    ]
    print(
        f"step FLOPs (fwd+bwd, FlopCounterMode): fused {flops / 1e9:.3f} G, "
        f"materialised {flops_mat / 1e9:.3f} G"
    )
    print(f"{'method':34s} {'ms/step':>10s} {'GFLOP/s':>10s}")
    for name, t, gf in rows:
        print(f"{name:34s} {t * 1e3:10.2f} {gf:10.1f}")
    print(f"{'dense matmul ' + str(args.gemm_size) + '^2 (possible)':34s} {'':>10s} {peak:10.1f}")
    print(f"fused vs materialised: {t_mat / t_fused:.2f}x")
    print(f"speedup_vs_loop={t_loop / best:.1f} gflops_fraction={achieved / peak:.2f}")


if __name__ == "__main__":
    main()
