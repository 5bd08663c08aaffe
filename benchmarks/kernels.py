"""Kernel benchmarks, in one run: analytic hyperkernel at N = 2,000 / 10,000 / 20,000 and a
plain MLP NTK with as many arc-cosine layers at the same N (ratio printed), the
Table-1 cross kernel (4 test images x 784 pixels against N = 1,000 training samples) at one and
two threads, and the empirical hyperkernel at N = 500 with f of width 1024 (factorised Eq. 12
vs direct Jacobian).

Each case runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own;
"work" is that peak minus the process's memory before the kernel call, and "output" is the size
of the returned float64 matrices. The analytic kernel is tiled (``--block``), so work should be
about output + O(block² · depth). Prints one line per case and the ratios at the end.

    .venv/bin/python benchmarks/kernels.py                      # all cases
    .venv/bin/python benchmarks/kernels.py --threads 1          # on a shared, loaded machine
    .venv/bin/python benchmarks/kernels.py --sizes 2000 --empirical-n 100   # a quick run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run_analytic(n: int, block: int, get: str) -> dict:
    import torch

    from hyperlab.kernels import HyperKernel

    torch.manual_seed(0)
    x = torch.randn(n, 784, dtype=torch.float64)  # MNIST-sized inputs of f
    z = torch.randint(0, 28, (n, 2)).to(torch.float64)  # pixel coordinates of g
    hk = HyperKernel(784, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    names = tuple(get.split(","))
    base = _current_rss_mb()
    t0 = time.perf_counter()
    out = hk((x, z), get=names, block_size=block)
    sec = time.perf_counter() - t0
    out_mb = sum(v.numel() * 8 for v in out.values()) / 2**20
    return {
        "case": f"analytic N={n}",
        "seconds": sec,
        "peak_rss_mb": _rss_mb(),
        "work_mb": _rss_mb() - base,
        "output_mb": out_mb,
    }


def run_mlp(n: int, block: int, get: str) -> dict:
    """A plain MLP NTK with as many arc-cosine layers as the hyperkernel's f and g together
    (depth 5: 4 hidden layers = f's 2 + g's 2), on the same inputs (x, z) concatenated."""
    import torch

    from hyperlab.kernels import MLPKernel

    torch.manual_seed(0)
    x = torch.randn(n, 784, dtype=torch.float64)
    z = torch.randint(0, 28, (n, 2)).to(torch.float64)
    mk = MLPKernel(786, 5)
    base = _current_rss_mb()
    t0 = time.perf_counter()
    out = mk(torch.cat([x, z], 1), get=tuple(get.split(",")), block_size=block)
    sec = time.perf_counter() - t0
    out = out if isinstance(out, dict) else {"k": out}
    return {
        "case": f"MLP NTK depth 5 N={n}",
        "seconds": sec,
        "peak_rss_mb": _rss_mb(),
        "work_mb": _rss_mb() - base,
        "output_mb": sum(v.numel() * 8 for v in out.values()) / 2**20,
    }


def run_cross(n_train: int, block: int) -> dict:
    """Table 1's shape: 4 test images x 784 pixels against n_train (image, pixel) samples."""
    import torch

    from hyperlab.kernels import HyperKernel

    torch.manual_seed(0)
    xt = torch.randn(4, 784, dtype=torch.float64).repeat_interleave(784, 0)
    zt = torch.randint(0, 28, (4 * 784, 2)).to(torch.float64)
    x = torch.randn(n_train, 784, dtype=torch.float64)
    z = torch.randint(0, 28, (n_train, 2)).to(torch.float64)
    hk = HyperKernel(784, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    base = _current_rss_mb()
    t0 = time.perf_counter()
    out = hk((xt, zt), (x, z), get=("nngp", "ntk"), block_size=block)
    sec = time.perf_counter() - t0
    return {
        "case": f"cross {4 * 784}x{n_train} threads={torch.get_num_threads()}",
        "seconds": sec,
        "peak_rss_mb": _rss_mb(),
        "work_mb": _rss_mb() - base,
        "output_mb": sum(v.numel() * 8 for v in out.values()) / 2**20,
    }


def run_empirical(n: int, width: int, method: str, chunk: int) -> dict:
    import torch

    from hyperlab import MLP, HyperModel
    from hyperlab.kernels import hyper_ntk

    torch.manual_seed(0)
    g = MLP([2, 16, 16, 1], "relu", bias=False, parameterization="ntk")
    model = HyperModel(g, 10, (width,), parameterization="ntk", bias=False).double()
    x = torch.randn(n, 10, dtype=torch.float64)
    z = torch.rand(n, 2, dtype=torch.float64)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = _current_rss_mb()
    t0 = time.perf_counter()
    k = hyper_ntk(model, x=x, z=z, method=method, chunk_size=chunk)
    sec = time.perf_counter() - t0
    return {
        "case": f"empirical N={n} width={width} {method}",
        "seconds": sec,
        "peak_rss_mb": _rss_mb(),
        "work_mb": _rss_mb() - base,
        "output_mb": k.numel() * 8 / 2**20,
        "params": n_params,
        "checksum": float(k.double().sum()),
    }


def _child(args: list[str], threads: int) -> dict:
    cmd = [sys.executable, __file__, "--threads", str(threads), "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"case {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _show(r: dict) -> None:
    extra = f" params={r['params']}" if "params" in r else ""
    print(
        f"{r['case']:<42} {r['seconds']:9.2f} s   peak RSS {r['peak_rss_mb']:8.0f} MB   "
        f"work {r['work_mb']:8.0f} MB   output {r['output_mb']:8.0f} MB{extra}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="2000,10000,20000", help="analytic N values")
    p.add_argument("--block", type=int, default=256, help="analytic tile size")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads per case (0: torch's default)"
    )
    p.add_argument("--get", default="ntk", help="analytic kernels: ntk, nngp or nngp,ntk")
    p.add_argument("--empirical-n", type=int, default=500)
    p.add_argument("--width", type=int, default=1024, help="f's hidden width (empirical)")
    p.add_argument("--chunk", type=int, default=50, help="empirical chunk size")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        import torch

        if a.threads > 0:
            torch.set_num_threads(a.threads)
        kind, *rest = a.child
        if kind == "analytic":
            res = run_analytic(int(rest[0]), int(rest[1]), rest[2])
        elif kind == "mlp":
            res = run_mlp(int(rest[0]), int(rest[1]), rest[2])
        elif kind == "cross":
            res = run_cross(int(rest[0]), int(rest[1]))
        else:
            res = run_empirical(int(rest[0]), int(rest[1]), rest[2], int(rest[3]))
        print(json.dumps(res))
        return
    import torch

    threads = a.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, threads {threads}, block {a.block}", flush=True)
    sizes = [int(s) for s in a.sizes.split(",") if s]
    analytic = []
    for n in sizes:
        r = _child(["analytic", str(n), str(a.block), a.get], a.threads)
        _show(r)
        analytic.append(r)
    mlp = []
    for n in sizes:
        r = _child(["mlp", str(n), str(a.block), a.get], a.threads)
        _show(r)
        mlp.append(r)
    cross = {t: _child(["cross", "1000", str(a.block)], t) for t in (1, 2)}
    for r in cross.values():
        _show(r)
    small = {t: _child(["analytic", str(sizes[0]), str(a.block), a.get], t) for t in (1, 2)}
    emp = {}
    for method in ("factorised", "jacobian"):
        r = _child(["empirical", str(a.empirical_n), str(a.width), method, str(a.chunk)], a.threads)
        _show(r)
        emp[method] = r
    print("ratios:")
    base = analytic[0] if analytic else None
    for r in analytic[1:]:
        scale = (int(r["case"].split("=")[1]) / int(base["case"].split("=")[1])) ** 2
        print(
            f"  {r['case']} / {base['case']}: time x{r['seconds'] / base['seconds']:.1f} "
            f"(N² predicts x{scale:.0f}), work/output = {r['work_mb'] / r['output_mb']:.2f}"
        )
    if base is not None:
        print(f"  {base['case']}: work/output = {base['work_mb'] / base['output_mb']:.2f}")
    print(
        f"  two threads / one thread: Table-1 cross kernel "
        f"x{cross[2]['seconds'] / cross[1]['seconds']:.2f}, analytic N={sizes[0]} "
        f"x{small[2]['seconds'] / small[1]['seconds']:.2f} (below 1: two threads are faster)"
    )
    for h, m in zip(analytic, mlp, strict=True):
        print(f"  hyperkernel / MLP NTK (same N, 4 arc-cosine layers each), "
              f"{h['case'].split()[-1]}: x{h['seconds'] / m['seconds']:.2f}")  # fmt: skip
    f, d = emp["factorised"], emp["jacobian"]
    rel = abs(f["checksum"] - d["checksum"]) / abs(d["checksum"])
    print(
        f"  empirical direct/factorised: time x{d['seconds'] / f['seconds']:.1f}, "
        f"work memory x{d['work_mb'] / max(f['work_mb'], 1.0):.1f}; checksums agree to {rel:.1e}"
    )


if __name__ == "__main__":
    main()
