"""Kernel regression (Eq. 18): Cholesky solve, posterior variance, non-PD handling."""

from __future__ import annotations

import pytest
import torch

from hyperlab.kernels import HyperKernel, MLPKernel
from hyperlab.kernels.regression import (
    NotPositiveDefiniteError,
    fit_kernel_regression,
    kernel_regression,
)

DT = torch.float64


def test_matches_direct_solve_and_defaults():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=g, dtype=DT)
    xt = torch.randn(7, 4, generator=g, dtype=DT)
    y = torch.randn(30, generator=g, dtype=DT)
    kern = MLPKernel(4, 3)
    k, ks = kern(x, get="ntk"), kern(xt, x, get="ntk")
    res = kernel_regression(k, y, ks)
    ref = ks @ torch.linalg.solve(k + 1e-3 * torch.eye(30, dtype=DT), y)
    torch.testing.assert_close(res.mean, ref, rtol=1e-9, atol=1e-10)
    assert res.jitter == 0.0 and res.variance is None
    rel = kernel_regression(k, y, ks, eps=1e-2, ridge="relative")
    ref = ks @ torch.linalg.solve(k + 1e-2 * torch.diag(torch.diagonal(k)), y)
    torch.testing.assert_close(rel.mean, ref, rtol=1e-9, atol=1e-10)
    multi = kernel_regression(k, torch.stack([y, 2 * y], 1), ks)
    torch.testing.assert_close(multi.mean[:, 1], 2 * res.mean)


def test_interpolates_and_posterior_variance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 3, generator=g, dtype=DT)
    z = torch.randn(20, 2, generator=g, dtype=DT)
    y = torch.sin(x[:, 0]) + z[:, 1]
    hk = HyperKernel(3, 2, 2, 3, z_kernel="rbf")
    res = fit_kernel_regression(hk, (x, z), y, get="nngp", eps=1e-8, solver="cholesky").predict(
        (x, z), variance=True)  # fmt: skip
    torch.testing.assert_close(res.mean, y, rtol=0, atol=1e-4)
    assert res.variance is not None and float(res.variance.max()) < 1e-5
    far = fit_kernel_regression(hk, (x, z), y, get="nngp", block_size=2).predict(
        (x[:3] * 0 + 5.0, z[:3]), variance=True)  # fmt: skip
    prior = torch.diagonal(hk((x[:3] * 0 + 5.0, z[:3]), get="nngp"))
    assert bool((far.variance > 0).all()) and bool((far.variance <= prior + 1e-12).all())


def test_not_positive_definite():
    v = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=DT)  # eigenvalues 3, -1
    y = torch.ones(2, dtype=DT)
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite.*jitter='auto'"):
        kernel_regression(v, y, v)
    with pytest.warns(RuntimeWarning, match="added jitter"):
        res = kernel_regression(v, y, v, jitter="auto", max_jitter=10.0)
    assert res.jitter >= 1.0  # smallest power of ten that makes K + eps·I + jitter·I PD
    with pytest.raises(NotPositiveDefiniteError, match="even with jitter"):
        kernel_regression(v, y, v, jitter="auto")  # max_jitter 1e-2 is not enough


def test_bad_inputs():
    k = torch.eye(3, dtype=DT)
    y = torch.ones(3, dtype=DT)
    with pytest.raises(ValueError, match="k_train: expected a square"):
        kernel_regression(torch.ones(3, 2, dtype=DT), y, k)
    with pytest.raises(ValueError, match="y_train"):
        kernel_regression(k, torch.ones(4, dtype=DT), k)
    with pytest.raises(ValueError, match="k_test_train"):
        kernel_regression(k, y, torch.ones(2, 4, dtype=DT))
    bad = k.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        kernel_regression(bad, y, k)
    with pytest.raises(ValueError, match="symmetric"):
        kernel_regression(k + torch.triu(torch.ones(3, 3, dtype=DT), 1), y, k)
    with pytest.raises(ValueError, match="ridge"):
        kernel_regression(k, y, k, ridge="diag")
    with pytest.raises(ValueError, match="k_test_diag"):
        kernel_regression(k, y, k, k_test_diag=torch.ones(2))


def _table1_like(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n // 6, 6, generator=g, dtype=DT).repeat_interleave(6, 0)
    z = torch.randint(0, 28, (n, 2), generator=g).to(DT)
    y = torch.sin(x[:, 0] + z[:, 0] / 5)
    return (x, z), y


@pytest.mark.parametrize("precond", ["pivoted_cholesky", "nystrom", "none"])
def test_every_solver_agrees_with_dense_float64(precond):
    from hyperlab.kernels import CGOptions

    train, y = _table1_like()
    test, _ = _table1_like(24, seed=1)
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    get = ("nngp", "ntk")
    dense = fit_kernel_regression(hk, train, y, get=get, solver="cholesky")
    cg = fit_kernel_regression(hk, train, y, get=get, solver="cg",
                               cg=CGOptions(tol=1e-11, rank=40, preconditioner=precond,
                                            max_iter=3000, block_size=32))  # fmt: skip
    assert dense.solver == "cholesky" and cg.solver == "cg" and cg.iterations > 0
    pd, pc = dense.predict(test, variance=True), cg.predict(test, variance=True)
    for k in get:
        assert pd[k].mean.shape == pc[k].mean.shape == (24,)
        assert pd[k].variance.shape == pc[k].variance.shape == (24,)
        assert float((pd[k].mean - pc[k].mean).norm() / pd[k].mean.norm()) < 1e-6
        assert float((pd[k].variance - pc[k].variance).abs().max()) < 1e-6 * float(
            pd[k].variance.abs().max() + 1)  # fmt: skip


def test_auto_picks_by_memory_and_says_why():
    train, y = _table1_like(60)
    hk = HyperKernel(6, 2, 2, 2, z_kernel="rbf")
    small = fit_kernel_regression(hk, train, y, solver="auto", memory_gb=10.0)
    assert small.solver == "cholesky" and "within" in small.reason
    big = fit_kernel_regression(hk, train, y, solver="auto", memory_gb=1e-6)
    assert big.solver == "cg" and "over" in big.reason
    torch.testing.assert_close(small.predict(train).mean, big.predict(train).mean,
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_the_front_door_refuses_what_it_cannot_do():
    train, y = _table1_like(12)
    hk = HyperKernel(6, 2, 2, 2)
    k = hk(train, get="ntk")
    with pytest.raises(ValueError, match="solver: expected"):
        fit_kernel_regression(hk, train, y, solver="lu")
    with pytest.raises(ValueError, match="solver: 'cg' needs an analytic kernel"):
        fit_kernel_regression(k, y=y, solver="cg")
    with pytest.raises(ValueError, match="train: a precomputed"):
        fit_kernel_regression(k, train, y)
    with pytest.raises(TypeError, match="kernel: expected an analytic kernel"):
        fit_kernel_regression(lambda u: u, train, y)
    with pytest.raises(ValueError, match="preconditioner"):
        from hyperlab.kernels import CGOptions

        CGOptions(preconditioner="jacobi")
    fit = fit_kernel_regression(k, y=y)
    assert fit.predict(hk(train, train, get="ntk")).mean.shape == (12,)
