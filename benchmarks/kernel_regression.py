"""Kernel regression at large N, in one run: the dense path (the N×N hyperkernel, Cholesky in
float64) against the matrix-free PCG solver (tiles computed on the fly, pivoted-Cholesky
preconditioner), on Table 1's samples: N/20 MNIST training images × 20 random pixels, predictions
on 2 test images × 784 pixels, the hyperkernel ('ntk') of f and g with 3 layers each.

PCG runs once per ``--cache-gb`` budget: 0 is fully matrix-free (tiles recomputed in every
product), a positive budget keeps the tiles that fit after the first product. Each case runs in
its own subprocess, so its peak resident memory is its own. Prints one line per case, the
relative difference of the paths' predictions at every N both ran, and ends with
``speedup_vs_dense=<x> memory_ratio=<y>`` for the last PCG budget at the largest N both ran
(x > 1: PCG faster; y: dense peak memory ÷ PCG peak memory).

    .venv/bin/python benchmarks/kernel_regression.py                       # 5k, 10k, 20k
    .venv/bin/python benchmarks/kernel_regression.py --iterative-sizes 60000   # + PCG at 60k
    .venv/bin/python benchmarks/kernel_regression.py --sizes 2000 --dtype float32   # quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def table1_samples(n: int, seed: int = 0):
    """N (image, pixel) training samples (N/20 images × 20 pixels) and 2 × 784 test points."""
    import torch

    from hyperlab.data import load_mnist
    from hyperlab.experiments.infinite_width.representation import pixel_coords, table1_context

    images, _ = load_mnist("train", data_dir=os.environ.get("HYPERLAB_DATA"))
    test_images, _ = load_mnist("test", data_dir=os.environ.get("HYPERLAB_DATA"))
    copies, n_img = 20, math.ceil(n / 20)
    imgs = images[5000 : 5000 + n_img]
    coords = pixel_coords()
    g = torch.Generator().manual_seed(seed)
    pix = torch.randint(0, 784, (n_img * copies,), generator=g)[:n]
    x = table1_context(imgs, "representation").repeat_interleave(copies, 0)[:n]
    flat = imgs.reshape(n_img, -1).double().div(255.0).repeat_interleave(copies, 0)[:n]
    y = flat[torch.arange(n), pix]
    test = test_images[:2]
    xt = table1_context(test, "representation").repeat_interleave(784, 0)
    return (x, coords[pix]), y, (xt, coords.repeat(2, 1))


def run_case(kind: str, n: int, a: argparse.Namespace, out: str, cache_gb: float) -> dict:
    import torch

    from hyperlab.kernels import HyperKernel, fit_kernel_regression, fit_kernel_regression_cg

    train, y, test = table1_samples(n)
    hk = HyperKernel(784, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    t0 = time.perf_counter()
    info: dict = {}
    if kind == "dense":
        k = hk(train, get="ntk")
        fit = fit_kernel_regression(k, y)
        del k
        pred = fit.predict(hk(test, train, get="ntk")).mean
    else:
        fit = fit_kernel_regression_cg(hk, train, y, get="ntk", tol=a.tol, rank=a.rank,
                                       dtype=getattr(torch, a.dtype),
                                       cache_gb=cache_gb)  # fmt: skip
        pred = fit.predict(test)
        info = {"iterations": fit.iterations, "residual": fit.residual["ntk"]}
    sec = time.perf_counter() - t0
    torch.save(pred, out)
    name = kind if kind == "dense" else f"pcg cache={cache_gb:g}GB"
    return {"case": f"{name} N={n}", "kind": kind, "n": n, "seconds": sec,
            "peak_rss_mb": _peak_mb(), **info}  # fmt: skip


def _child(kind: str, n: int, a: argparse.Namespace, out: str, cache_gb: float = 0.0) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(n), out, str(cache_gb),
           "--threads", str(a.threads),
           "--tol", str(a.tol), "--rank", str(a.rank), "--dtype", a.dtype]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"case": f"{kind} N={n}", "failed": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="5000,10000,20000", help="N for both paths")
    p.add_argument("--iterative-sizes", default="", help="N for the PCG path only (e.g. 60000)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per case")
    p.add_argument("--tol", type=float, default=1e-6, help="PCG relative residual")
    p.add_argument("--rank", type=int, default=1000, help="preconditioner rank")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="PCG tile dtype (products accumulate in float64)")  # fmt: skip
    p.add_argument("--cache-gb", default="0,2", help="PCG tile-cache budgets, one run each")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.child:
        kind, n, out, cache = a.child
        print(json.dumps(run_case(kind, int(n), a, out, float(cache))))
        return
    print(f"torch {torch.__version__}, {a.threads} threads, PCG: tol {a.tol:g}, rank {a.rank}, "
          f"{a.dtype} tiles; hyperkernel f, g depth 3; Table 1 samples", flush=True)  # fmt: skip
    both = [int(s) for s in a.sizes.split(",") if s]
    only = [int(s) for s in a.iterative_sizes.split(",") if s]
    caches = [float(c) for c in a.cache_gb.split(",") if c]
    rows: dict[tuple[str, int], dict] = {}
    last = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in both + only:
            cases = [("dense", 0.0)] if n in both else []
            for kind, cache in cases + [("pcg", c) for c in caches]:
                key = f"{kind}{cache:g}"
                r = _child(kind, n, a, os.path.join(tmp, f"{key}_{n}.pt"), cache)
                rows[(key, n)] = r
                if "failed" in r:
                    print(f"{r['case']:<26} failed: {r['failed']}", flush=True)
                    continue
                extra = (f"  iterations {r['iterations']:4d}  residual {r['residual']:.1e}"
                         if kind == "pcg" else "")  # fmt: skip
                print(f"{r['case']:<26} {r['seconds']:9.1f} s   peak RSS "
                      f"{r['peak_rss_mb']:8.0f} MB{extra}", flush=True)  # fmt: skip
        for n in both:
            d = rows[("dense0", n)]
            for cache in caches:
                c = rows[(f"pcg{cache:g}", n)]
                if "failed" in d or "failed" in c:
                    continue
                pd, pc = (torch.load(os.path.join(tmp, f"{k}_{n}.pt"))
                          for k in ("dense0", f"pcg{cache:g}"))  # fmt: skip
                rel = float((pd - pc).norm() / pd.norm())
                print(f"N={n}, PCG cache {cache:g} GB: PCG / dense time "
                      f"x{c['seconds'] / d['seconds']:.2f}, peak memory dense / PCG "
                      f"x{d['peak_rss_mb'] / c['peak_rss_mb']:.2f}, predictions differ by "
                      f"{rel:.1e} (relative)")  # fmt: skip
                last = (d, c)
    if last is None:
        print("speedup_vs_dense=nan memory_ratio=nan")
        return
    d, c = last
    print(f"speedup_vs_dense={d['seconds'] / c['seconds']:.2f} "
          f"memory_ratio={d['peak_rss_mb'] / c['peak_rss_mb']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
