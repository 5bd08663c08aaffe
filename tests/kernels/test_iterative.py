"""Matrix-free kernel regression (PCG on tiles) against the dense Cholesky path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hyperlab.kernels import CGOptions, HyperKernel, MLPKernel, fit_kernel_regression
from hyperlab.kernels.iterative import NotConvergedError, solve_cg

DT = torch.float64
HERE = Path(__file__).parent


def table1_like(n_images: int, copies: int, seed: int = 0):
    """(x, z) pairs like Table 1's: each 'image' x repeated with random pixel coordinates z."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_images, 6, generator=g, dtype=DT).repeat_interleave(copies, 0)
    z = torch.randint(0, 28, (n_images * copies, 2), generator=g).to(DT)
    y = torch.sin(x[:, 0] + z[:, 0] / 5) + 0.1 * torch.randn(len(x), generator=g, dtype=DT)
    return x, z, y


def _dense(kernel, train, test, y, get, **kw):
    k, ks = kernel(train, get=get), kernel(test, train, get=get)
    return fit_kernel_regression(k, y=y, **kw).predict(ks).mean


def fit_cg(kernel, train, y, *, get="ntk", eps=1e-3, ridge="identity", **options):
    """The CG solver with its options (the front door's solver='cg' underneath)."""
    return solve_cg(kernel, train, y, get=get, eps=eps, ridge=ridge,
                    options=CGOptions(**options))  # fmt: skip


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("variant", ["s_weighted", "released"])
def test_hyperkernel_cg_equals_dense(variant):
    x, z, y = table1_like(30, 8)
    xt, zt, _ = table1_like(4, 5, seed=1)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5, variant=variant)
    fit = fit_cg(hk, (x, z), y, get=("nngp", "ntk"), tol=1e-10, rank=40,
                                   block_size=64)  # fmt: skip
    pred = fit.predict((xt, zt))
    for k in ("nngp", "ntk"):
        assert pred[k].shape == (20,)
        assert _rel(pred[k], _dense(hk, (x, z), (xt, zt), y, k)) < 1e-6
        assert fit.residual[k] <= 1e-9
    assert 0 < fit.iterations < 240 and fit.history[-1] <= 1e-10


@pytest.mark.parametrize("bias", [False, True])
def test_mlp_kernels_cg_equals_dense_multi_output_and_relative_ridge(bias):
    g = torch.Generator().manual_seed(3)
    x, xt = torch.randn(150, 5, generator=g, dtype=DT), torch.randn(9, 5, generator=g, dtype=DT)
    y = torch.stack([x[:, 0].sin(), x[:, 1] * x[:, 2]], 1)
    mk = MLPKernel(5, 4, activation="leaky_relu", bias=bias)
    for get, kw in (("nngp", {}), ("ntk", {"eps": 1e-2, "ridge": "relative"})):
        fit = fit_cg(mk, x, y, get=get, tol=1e-11, rank=20, block_size=32, **kw)
        pred = fit.predict(xt)
        assert pred.shape == (9, 2)
        assert _rel(pred, _dense(mk, x, xt, y, get, **kw)) < 1e-6


def test_preconditioner_cuts_iterations():
    x, z, y = table1_like(40, 10)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    plain = fit_cg(hk, (x, z), y, rank=0, tol=1e-8, max_iter=2000)
    pre = fit_cg(hk, (x, z), y, rank=100, tol=1e-8)
    assert pre.iterations < plain.iterations
    torch.testing.assert_close(pre.predict((x, z)), plain.predict((x, z)), rtol=1e-6, atol=1e-7)


def test_not_converged_raises_named_error():
    x, z, y = table1_like(20, 5)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf")
    with pytest.raises(NotConvergedError, match="max_iter=3"):
        fit_cg(hk, (x, z), y, rank=0, max_iter=3, tol=1e-12)


def test_float32_tiles_accuracy_bound():
    x, z, y = table1_like(30, 8)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    f64 = fit_cg(hk, (x, z), y, get=("nngp", "ntk"), tol=1e-9)
    f32 = fit_cg(hk, (x, z), y, get=("nngp", "ntk"), tol=1e-6,
                                   dtype=torch.float32)  # fmt: skip
    p64, p32 = f64.predict((x[:50], z[:50])), f32.predict((x[:50], z[:50]))
    for k in ("nngp", "ntk"):
        assert p32[k].dtype == DT
        assert 0 < _rel(p32[k], p64[k]) < 1e-2


def test_float32_nystrom_factors_reach_a_tight_tolerance():
    # the preconditioner applied in float32 (float32 tiles) still lets CG reach 1e-10 on the
    # float64 system its tiles define, in about as many iterations as float64 factors
    x, z, y = table1_like(40, 10)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    kw = {"get": ("nngp", "ntk"), "tol": 1e-10, "rank": 40, "block_size": 64}
    f32 = fit_cg(hk, (x, z), y, dtype=torch.float32, **kw)
    f64 = fit_cg(hk, (x, z), y, **kw)
    assert max(f32.residual.values()) <= 10 * 1e-10
    assert f32.iterations <= 1.1 * f64.iterations


def test_bad_arguments_raise_clear_errors():
    x, z, y = table1_like(5, 2)
    hk = HyperKernel(6, 2, 3, 3)
    with pytest.raises(ValueError, match="eps"):
        fit_cg(hk, (x, z), y, eps=0.0)
    with pytest.raises(ValueError, match="tol"):
        fit_cg(hk, (x, z), y, tol=2.0)
    with pytest.raises(ValueError, match="rank"):
        fit_cg(hk, (x, z), y, rank=-1)
    with pytest.raises(ValueError, match="y_train"):
        fit_cg(hk, (x, z), y[:3])
    with pytest.raises(TypeError, match="kernel"):
        fit_cg(lambda a: a, (x, z), y)


def test_two_processes_under_torchrun_give_the_single_process_answer(tmp_path):
    """torchrun, 2 CPU processes (gloo): each rank computes half the tiles, one all-reduce per
    iteration; both ranks end with the single-process α and predictions."""
    out = tmp_path / "dist.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "cg_worker.py"), str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = torch.load(out)
    x, z, y = table1_like(24, 6)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    ref = fit_cg(hk, (x, z), y, get=("nngp", "ntk"), tol=1e-10, rank=30,
                                   block_size=16)  # fmt: skip
    ref_pred = ref.predict((x[:40], z[:40]))
    # the all-reduce sums the ranks' halves in another order: rounding, so a few iterations more
    # or less, the same answer
    assert got["world"] == 2 and abs(got["iterations"] - ref.iterations) <= 5
    for k in ("nngp", "ntk"):
        torch.testing.assert_close(got["alpha"][k], ref.alpha[k], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(got["pred"][k], ref_pred[k], rtol=1e-9, atol=1e-9)


def test_tile_cache_changes_time_not_the_answer():
    x, z, y = table1_like(20, 6)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    kw = {"get": ("nngp", "ntk"), "tol": 1e-9, "rank": 10, "block_size": 16}
    ref = fit_cg(hk, (x, z), y, **kw)
    for gb in (1.0, 20_000 / 2**30):  # everything cached; a budget of a few tiles
        got = fit_cg(hk, (x, z), y, cache_gb=gb, **kw)
        assert got.iterations == ref.iterations
        for k in ("nngp", "ntk"):
            assert torch.equal(got.alpha[k], ref.alpha[k])
    with pytest.raises(ValueError, match="cache_gb"):
        fit_cg(hk, (x, z), y, cache_gb=-1.0)


def test_nystrom_factors_are_orthonormal_and_exact_at_full_rank():
    from hyperlab.kernels.iterative import _nystrom, _Operator

    x = torch.randn(60, 5, generator=torch.Generator().manual_seed(0), dtype=DT)
    mk = MLPKernel(5, 3)
    op = _Operator(mk.tiles(x, None, get=("nngp", "ntk")), 16)
    us, lams = _nystrom(op, 2, 60, 60, torch.ones(2, 60, dtype=DT), seed=0)
    for u, lam, get in zip(us, lams, ("nngp", "ntk"), strict=True):
        k = mk(x, get=get)
        torch.testing.assert_close(u.T @ u, torch.eye(60, dtype=DT), atol=1e-8, rtol=0)
        assert bool((lam[:-1] >= lam[1:]).all())  # descending, as the preconditioner assumes
        assert _rel(u @ torch.diag(lam) @ u.T, k) < 1e-8
    low, lam10 = _nystrom(op, 2, 60, 10, torch.ones(2, 60, dtype=DT), seed=0)
    assert low[0].shape == (60, 10) and lam10[0].shape == (10,)
    # float32 tiles: the factors are float32 (half the memory) and agree with float64 ones
    op32 = _Operator(mk.tiles(x, None, get=("nngp", "ntk"), dtype=torch.float32), 16)
    u32, l32 = _nystrom(op32, 2, 60, 10, torch.ones(2, 60, dtype=DT), seed=0)
    assert u32[0].dtype == torch.float32 and l32[0].dtype == DT
    approx = [u.double() @ torch.diag(lam) @ u.double().T
              for u, lam in ((low[1], lam10[1]), (u32[1], l32[1]))]  # fmt: skip
    assert 0 < _rel(approx[1], approx[0]) < 1e-3  # float32 rounding, amplified by the core


def test_nystrom_preconditioner_is_spd_for_a_factor_that_is_not_orthonormal():
    from hyperlab.kernels.iterative import _NystromPreconditioner

    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(50, 6, generator=g, dtype=DT))[0]
    lam = torch.tensor([40.0, 20.0, 9.0, 5.0, 2.0, 1.0], dtype=DT)
    mu = 0.1
    ideal = torch.eye(50, dtype=DT) - q @ q.T + q @ torch.diag((lam[-1] + mu) / (lam + mu)) @ q.T
    # U = Q T with T upper triangular, far from orthogonal (as rounding leaves U, much
    # exaggerated): U's Cholesky-QR basis is Q itself, so P⁻¹ is the ideal map to rounding
    t = torch.eye(6, dtype=DT) + 0.05 * torch.randn(6, 6, generator=g, dtype=DT).triu()
    pre = _NystromPreconditioner([(q @ t).float()], [lam], torch.full((1, 50), mu, dtype=DT))
    got = pre(torch.eye(50, dtype=DT)[None])[0]
    torch.testing.assert_close(got, got.T, atol=1e-12, rtol=0)  # applied in float64
    assert _rel(got, ideal) < 1e-6
    # the formula that assumes U orthonormal is indefinite here
    plain = (
        torch.eye(50, dtype=DT) + (q @ t) @ torch.diag((lam[-1] + mu) / (lam + mu) - 1) @ (q @ t).T
    )
    assert float(torch.linalg.eigvalsh(plain).min()) < 0 < float(torch.linalg.eigvalsh(got).min())


def test_memory_estimate_grows_with_rank_and_cache_and_caps_the_cache():
    from hyperlab.kernels import cg_memory_bytes

    base = cg_memory_bytes(60_000, CGOptions(rank=1000), kernels=2)
    assert (
        cg_memory_bytes(60_000, CGOptions(rank=3000), kernels=2)["preconditioner"]
        > 2.9 * (base["preconditioner"])
    )
    big = cg_memory_bytes(60_000, CGOptions(rank=1000, cache_gb=6.0), kernels=2)
    assert big["total"] - base["total"] == pytest.approx(6 * 2**30)
    capped = cg_memory_bytes(1000, CGOptions(rank=10, cache_gb=6.0, dtype=torch.float32))
    assert capped["cache"] < 1000 * 1000 * 4  # at most the upper triangle, not the budget
    # the 60k Table-1 solve that the OS killed at 23.5 GB (rank 3000, 6 GB cache, two kernels)
    # was estimated over the old preconditioner's peak; the new one fits in 24 GB
    assert cg_memory_bytes(60_000, CGOptions(rank=3000, cache_gb=6.0), kernels=2,
                           threads=1)["total"] < 20 * 2**30  # fmt: skip
    # measured (benchmarks/kernel_regression.py --sizes 20000 --ranks 3000 --cache-gb 4, docs/
    # how-to/kernels.md): peak RSS 3,543 MB, 638 MB before the solve; the estimate is within 15 %
    est = cg_memory_bytes(20_000, CGOptions(rank=3000, cache_gb=4.0, dtype=torch.float32),
                          kernels=2, threads=1)["total"] / 2**20  # fmt: skip
    assert est == pytest.approx(3543 - 638, rel=0.15)
    # rank 9000 at 60k (two kernels, float32 factors, 6 GB cache, one thread) fits in 24 GB
    # (the run in results/infinite-width-representation-60k-rank9000-reduced peaked at 20.0 GB)
    f32 = CGOptions(rank=9000, cache_gb=6.0, dtype=torch.float32)
    assert cg_memory_bytes(60_000, f32, kernels=2, threads=1)["total"] < 20 * 2**30


def test_solve_over_the_free_memory_is_refused_before_any_work(monkeypatch):
    import hyperlab.kernels.iterative as it

    x, z, y = table1_like(20, 5)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf")
    monkeypatch.setattr(it, "available_memory_bytes", lambda device="cpu": 1e5)
    monkeypatch.setattr(it, "_Operator", None)  # never reached
    with pytest.raises(MemoryError, match=r"rank=7.*cache_gb=0\.5.*lower rank or cache_gb"):
        fit_cg(hk, (x, z), y, rank=7, cache_gb=0.5)
    monkeypatch.setattr(it, "available_memory_bytes", lambda device="cpu": None)
    it.check_cg_memory(10**6, CGOptions(rank=10**5))  # unknown free memory: no check


def test_cg_reports_its_costs_and_the_nystrom_tail_falls_with_rank():
    x, z, y = table1_like(40, 10)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    tails = []
    for rank in (20, 100):
        fit = fit_kernel_regression(hk, (x, z), y, solver="cg", cg=CGOptions(rank=rank))
        assert fit.cg_stats["preconditioner_seconds"] >= 0 and fit.cg_stats["cg_seconds"] > 0
        tails.append(fit.cg_stats["tail"]["ntk"])
    assert tails[0] > tails[1] > 0
