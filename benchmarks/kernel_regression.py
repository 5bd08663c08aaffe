"""Kernel regression at large N, like for like, in one run, on Table 1's samples (N/20 MNIST
training images × 20 random pixels; predictions on 2 test images × 784 pixels; the hyperkernel
'ntk' of f and g with 3 layers each):

* dense (``fit_kernel_regression(..., solver='cholesky')``: the N×N kernel, Cholesky) against
  matrix-free PCG (``solver='cg'``: tiles on the fly, ``--cache-gb`` of them kept), **in the same
  precision on each line**: float64 both, and float32 both (dense: a float32 kernel and
  float32 Cholesky; PCG: float32 tiles, products accumulated in float64);
* at N ≤ 10,000, on one precomputed float64 K: scipy's CG (no preconditioner), GPyTorch's
  ``linear_cg`` with its pivoted-Cholesky preconditioner (rank 15 and ``--rank``), and
  hyperlab's PCG with each preconditioner (pivoted Cholesky with exact pivots, randomized
  Nyström) at those ranks: iterations and seconds at tol 1e-6.

Each dense / PCG case runs in its own subprocess (its peak resident memory is its own); one
thread unless ``--threads``. Prints seconds per CG iteration against N and ends with
``speedup_vs_dense=<x> memory_ratio=<y> iterations_20k=<n>`` (float32 both, at 20,000 or the
largest N run).

    .venv/bin/python benchmarks/kernel_regression.py                     # 5k, 10k, 20k
    .venv/bin/python benchmarks/kernel_regression.py --large             # + PCG at 60k
    .venv/bin/python benchmarks/kernel_regression.py --sizes 2000        # quick
    .venv/bin/python benchmarks/kernel_regression.py --sizes 20000 --ranks 1000,2000,3000,4000

``--ranks`` instead solves Table 1's two kernels side by side (as the experiment does) at each
preconditioner rank, printing iterations, preconditioner and CG seconds, peak memory against
``cg_memory_bytes``' estimate and Nyström's tail λ_r/μ, ending ``iterations_by_rank=...``.
"""

from __future__ import annotations

import argparse
import importlib.util
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


def _kernel():
    from hyperlab.kernels import HyperKernel

    return HyperKernel(784, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)


def run_case(kind: str, n: int, precision: str, a: argparse.Namespace, out: str) -> dict:
    """One dense or PCG solve and prediction in ``precision``."""
    import torch

    from hyperlab.kernels import CGOptions, cg_memory_bytes, fit_kernel_regression

    dt = getattr(torch, precision)
    train, y, test = table1_samples(n)
    hk = _kernel()
    before = _peak_mb()  # the process with its inputs, before the solve
    t0 = time.perf_counter()
    info: dict = {}
    if kind == "dense" and precision == "float64":
        pred = fit_kernel_regression(hk, train, y, solver="cholesky").predict(test).mean
    elif kind == "dense":  # float32 kernel, float32 Cholesky: the precision PCG's tiles use
        k = hk(train, get="ntk", dtype=dt)
        k.diagonal().add_(1e-3)
        chol = torch.linalg.cholesky(k)
        del k
        alpha = torch.cholesky_solve(y.to(dt)[:, None], chol)[:, 0]
        pred = (hk(test, train, get="ntk", dtype=dt) @ alpha).double()
    else:
        opts = CGOptions(
            tol=a.tol,
            rank=a.rank,
            preconditioner=a.preconditioner,
            dtype=dt,
            cache_gb=a.cache_gb,
            max_iter=3000,
        )
        get = ("ntk", "nngp") if kind == "table1" else ("ntk",)  # Table 1 solves both
        fit = fit_kernel_regression(hk, train, y, get=get, solver="cg", cg=opts)
        res = fit.predict(test)  # a dict of results when several kernels were solved
        pred = (res["ntk"] if isinstance(res, dict) else res).mean
        est = cg_memory_bytes(n, opts, kernels=len(get))["total"] / 2**20
        info = {"iterations": fit.iterations, "residual": max(fit.residual.values()),
                "stats": fit.cg_stats, "estimate_mb": est}  # fmt: skip
    sec = time.perf_counter() - t0
    torch.save(pred, out)
    return {
        "case": f"{kind} {precision} N={n}",
        "kind": kind,
        "n": n,
        "precision": precision,
        "seconds": sec,
        "peak_rss_mb": _peak_mb(),
        "rss_before_mb": before,
        **info,
    }


class _Precomputed:
    """A precomputed K as an 'analytic kernel' (its .tiles slice K): hyperlab's PCG on the
    very matrix the peers get."""

    def __init__(self, k):
        self.k = k

    def tiles(self, u1, u2=None, get=("ntk",), *, dtype=None):
        import torch

        from hyperlab.kernels.tiles import Tiles

        k = self.k

        def tile(r, c):
            return {"ntk": k[r][:, c]}

        n = k.shape[0]
        return Tiles(tile, (n, n), ("ntk",), u2 is None, k.device, dtype or torch.float64)


def peers(n: int, a: argparse.Namespace) -> list[str]:
    """scipy CG, GPyTorch linear_cg and hyperlab's PCG on one precomputed float64 K."""
    import numpy as np
    import torch

    from hyperlab.kernels import CGOptions
    from hyperlab.kernels.iterative import solve_cg

    train, y, _ = table1_samples(n)
    k = _kernel()(train, get="ntk")
    k.diagonal().add_(1e-3)  # K + εI, the system every solver gets
    lines = []
    if importlib.util.find_spec("scipy"):
        from scipy.sparse.linalg import cg

        it = [0]
        t0 = time.perf_counter()
        x, info = cg(
            k.numpy(),
            y.numpy(),
            rtol=a.tol,
            maxiter=5000,
            callback=lambda _: it.__setitem__(0, it[0] + 1),
        )
        sec = time.perf_counter() - t0
        res = float(np.linalg.norm(k.numpy() @ x - y.numpy()) / np.linalg.norm(y.numpy()))
        lines.append(
            f"  scipy cg (none)         N={n}: {it[0]:4d} iterations {sec:7.2f} s "
            f"residual {res:.1e}"
        )
    if importlib.util.find_spec("gpytorch"):
        from linear_operator import settings, to_linear_operator
        from linear_operator.utils.linear_cg import linear_cg

        k.diagonal().sub_(1e-3)
        op = to_linear_operator(k).add_diagonal(torch.tensor(1e-3, dtype=torch.float64))
        for rank in (15, a.rank):
            calls = [0]

            def mm(v, op=op, calls=calls):
                calls[0] += 1
                return op._matmul(v)

            with (
                torch.no_grad(),
                settings.max_preconditioner_size(rank),
                settings.min_preconditioning_size(0),
            ):
                t0 = time.perf_counter()
                op._q_cache = None  # a fresh preconditioner for each rank
                precond = op._preconditioner()[0]
                sol = linear_cg(
                    mm,
                    y[:, None],
                    tolerance=a.tol,
                    max_iter=5000,
                    preconditioner=precond,
                    max_tridiag_iter=0,
                )
                sec = time.perf_counter() - t0
            res = float(((k @ sol[:, 0] + 1e-3 * sol[:, 0]) - y).norm() / y.norm())
            lines.append(
                f"  gpytorch linear_cg pivoted r={rank:<5d}N={n}: {calls[0] - 1:4d} "
                f"iterations {sec:7.2f} s residual {res:.1e}"
            )
        k.diagonal().add_(1e-3)
    k.diagonal().sub_(1e-3)
    pre = _Precomputed(k)
    for rank in (15, a.rank):
        for kind in ("pivoted_cholesky", "nystrom"):
            t0 = time.perf_counter()
            fit = solve_cg(
                pre,
                None,
                y,
                get="ntk",
                eps=1e-3,
                options=CGOptions(tol=a.tol, rank=rank, preconditioner=kind),
            )
            sec = time.perf_counter() - t0
            lines.append(
                f"  hyperlab pcg {kind:16s} r={rank:<5d}N={n}: {fit.iterations:4d} "
                f"iterations {sec:7.2f} s residual {fit.residual['ntk']:.1e}"
            )
    return lines


def _child(kind: str, n: int, precision: str, a: argparse.Namespace, out: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        str(n),
        precision,
        out,
        "--threads",
        str(a.threads),
        "--tol",
        str(a.tol),
        "--rank",
        str(a.rank),
        "--preconditioner",
        a.preconditioner,
        "--cache-gb",
        str(a.cache_gb),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {
            "case": f"{kind} {precision} N={n}",
            "failed": proc.stderr.strip().splitlines()[-1:],
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rank_sweep(n: int, ranks: list[int], a: argparse.Namespace) -> None:
    """Table 1's two kernels (hyperkernel and NNGP, one solve side by side, as the experiment
    runs them) in float32 tiles at each preconditioner rank: what a larger rank buys in
    iterations and costs in preconditioner time and memory (against ``cg_memory_bytes``)."""
    print(f"Table 1's kernels side by side (ntk + nngp), N = {n}, float32 tiles:")
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for rank in ranks:
            r = _child("table1", n, "float32", argparse.Namespace(**{**vars(a), "rank": rank}),
                       os.path.join(tmp, f"r{rank}.pt"))  # fmt: skip
            if "failed" in r:
                print(f"  rank {rank:5d}: failed: {r['failed']}", flush=True)
                continue
            st = r["stats"]
            tail = ", ".join(f"{k} {v:.0f}" for k, v in st.get("tail", {}).items())
            print(
                f"  rank {rank:5d}: {r['iterations']:4d} iterations, {r['seconds']:7.1f} s "
                f"(preconditioner {st['preconditioner_seconds']:.1f} s, CG "
                f"{st['cg_seconds']:.1f} s), peak RSS {r['peak_rss_mb']:6.0f} MB "
                f"({r['rss_before_mb']:.0f} before the solve; the solve's estimate "
                f"{r['estimate_mb']:6.0f} MB), residual {r['residual']:.1e}, tail λ_r/μ {tail}",
                flush=True,
            )
            found.append(f"{rank}:{r['iterations']}")
    print(f"iterations_by_rank={','.join(found) or 'nan'} n={n}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="5000,10000,20000", help="N for dense and PCG")
    p.add_argument("--large", action="store_true", help="also PCG at N = 60,000")
    p.add_argument("--precisions", default="float64,float32")
    p.add_argument("--threads", type=int, default=1, help="torch threads per case")
    p.add_argument("--tol", type=float, default=1e-6, help="CG relative residual")
    p.add_argument("--rank", type=int, default=1000, help="preconditioner rank")
    p.add_argument(
        "--preconditioner", default="nystrom", choices=("pivoted_cholesky", "nystrom", "none")
    )
    p.add_argument("--cache-gb", type=float, default=2.0, help="PCG tile cache")
    p.add_argument("--peers-max-n", type=int, default=10_000)
    p.add_argument(
        "--ranks",
        default="",
        help="instead: Table 1's two kernels at these preconditioner ranks, at the largest of "
        "--sizes (e.g. --sizes 20000 --ranks 1000,2000,3000,4000)",
    )
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    import torch

    from hyperlab.runtime import cpu_model

    torch.set_num_threads(a.threads)
    if a.child:
        kind, n, precision, out = a.child
        print(json.dumps(run_case(kind, int(n), precision, a, out)))
        return
    print(
        f"cpu: {cpu_model()}; torch {torch.__version__}; {a.threads} thread(s); PCG: tol "
        f"{a.tol:g}, {a.preconditioner} rank {a.rank}, tile cache {a.cache_gb:g} GB; "
        "hyperkernel f, g depth 3; Table 1 samples",
        flush=True,
    )
    sizes = [int(s) for s in a.sizes.split(",") if s]
    if a.ranks:
        rank_sweep(max(sizes), [int(r) for r in a.ranks.split(",") if r], a)
        return
    precisions = [s for s in a.precisions.split(",") if s]
    rows: dict[tuple[str, str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes + ([60_000] if a.large else []):
            for prec in precisions:
                for kind in ("dense", "pcg") if n != 60_000 else ("pcg",):
                    r = _child(kind, n, prec, a, os.path.join(tmp, f"{kind}{prec}{n}.pt"))
                    rows[(kind, prec, n)] = r
                    if "failed" in r:
                        print(f"{r['case']:<24} failed: {r['failed']}", flush=True)
                        continue
                    extra = ""
                    if kind == "pcg":
                        per = r["seconds"] / r["iterations"]
                        extra = (
                            f"  iterations {r['iterations']:4d} ({per:.3f} s each, the first "
                            f"product included)  residual {r['residual']:.1e}"
                        )
                    print(
                        f"{r['case']:<24} {r['seconds']:9.1f} s   peak RSS "
                        f"{r['peak_rss_mb']:8.0f} MB{extra}",
                        flush=True,
                    )
                d, c = rows.get(("dense", prec, n)), rows[("pcg", prec, n)]
                if d and "failed" not in d and "failed" not in c:
                    pd = torch.load(os.path.join(tmp, f"dense{prec}{n}.pt"))
                    pc = torch.load(os.path.join(tmp, f"pcg{prec}{n}.pt"))
                    rel = float((pd - pc).norm() / pd.norm())
                    print(
                        f"  N={n} {prec} both: dense / PCG time "
                        f"x{d['seconds'] / c['seconds']:.2f}, "
                        f"peak memory dense / PCG x{d['peak_rss_mb'] / c['peak_rss_mb']:.2f}, "
                        f"predictions differ by {rel:.1e}",
                        flush=True,
                    )
            if n <= a.peers_max_n:
                print(f"  peers on one precomputed float64 K + 1e-3 I (N = {n}, tol {a.tol:g}):")
                for line in peers(n, a):
                    print(line, flush=True)
    last = max(
        (
            n
            for (_, prec, n), r in rows.items()
            if prec == "float32" and n in sizes and "failed" not in r
        ),
        default=None,
    )
    if last is None or ("dense", "float32", last) not in rows:
        print("speedup_vs_dense=nan memory_ratio=nan iterations_20k=nan")
        return
    d, c = rows[("dense", "float32", last)], rows[("pcg", "float32", last)]
    print(
        f"speedup_vs_dense={d['seconds'] / c['seconds']:.2f} "
        f"memory_ratio={d['peak_rss_mb'] / c['peak_rss_mb']:.2f} "
        f"iterations_20k={c.get('iterations', 'nan')}"
        + ("" if last == 20_000 else f" (at N = {last})")
    )


if __name__ == "__main__":
    main()
