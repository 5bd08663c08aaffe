"""Neural kernels with hyperparameters (hyperlab.kernels.gp) and inside GPyTorch: equal to the
analytic kernels at their constants (float64), gradients by finite differences, fitting by
marginal likelihood recovers known hyperparameters within their standard errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from hyperlab.kernels import HyperKernel, MLPKernel
from hyperlab.kernels.gp import (
    HyperGPKernel,
    MLPGPKernel,
    fit_hyperparameters,
    hyper_gp,
    log_marginal_likelihood,
    log_marginal_likelihood_stochastic,
    mlp_gp,
)

DT = torch.float64
HAVE_GPYTORCH = importlib.util.find_spec("gpytorch") is not None


def _data(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=DT), torch.randn(n, 2, generator=g, dtype=DT)


def _rel(a, b):
    return float(((a - b).abs() / b.abs().clamp_min(1.0)).max())


@pytest.mark.parametrize(
    "kw",
    [{}, {"activation": "leaky_relu", "bias": True}, {"input_kernel": "rbf", "lengthscale": 1.7}],
)
def test_mlp_gp_kernel_equals_the_analytic_kernel(kw):
    x, _ = _data()
    xt, _ = _data(5, seed=1)
    mk = MLPKernel(5, 4, **kw)
    for get in ("nngp", "ntk"):
        gk = MLPGPKernel.from_analytic(mk, get)
        assert _rel(gk(x), mk(x, get=get)) < 1e-10
        assert _rel(gk(xt, x), mk(xt, x, get=get)) < 1e-10


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"z_kernel": "rbf", "lengthscale": 2**0.5},
        {"variant": "released", "g_bias": True},
        {"f_bias": True, "activation": "leaky_relu", "z_kernel": "rbf"},
    ],
)
def test_hyper_gp_kernel_equals_the_hyperkernel(kw):
    x, z = _data()
    xt, zt = _data(5, seed=1)
    hk = HyperKernel(5, 2, 3, 3, **kw)
    u, ut = torch.cat([x, z], 1), torch.cat([xt, zt], 1)
    for get in ("nngp", "ntk"):
        gk = HyperGPKernel.from_analytic(hk, get)
        assert _rel(gk(u), hk((x, z), get=get)) < 1e-10
        assert _rel(gk(ut, u), hk((xt, zt), (x, z), get=get)) < 1e-10
        # the diagonal path (row against itself) to the arccos conditioning at rho = 1
        diag = gk.evaluate(gk.values(), u, u, pairwise=True)
        assert _rel(diag, torch.diagonal(hk((x, z), get=get))) < 1e-7


def test_gradients_match_finite_differences():
    x, z = _data(6)
    xt, zt = _data(4, seed=2)
    f = {
        "weight_var": torch.tensor([1.7, 2.3], dtype=DT),
        "bias_var": torch.tensor([0.1, 0.2, 0.3], dtype=DT),
        "input_scale": torch.tensor(1.2, dtype=DT),
        "lengthscale": torch.tensor(1.1, dtype=DT),
    }
    g = {
        "weight_var": torch.tensor([2.1, 1.9], dtype=DT),
        "bias_var": torch.tensor([0.2, 0.1, 0.4], dtype=DT),
        "input_scale": torch.tensor(0.9, dtype=DT),
        "lengthscale": torch.tensor(1.3, dtype=DT),
    }
    keys = list(f)

    def hyper(*vals):
        fv, gv = dict(zip(keys, vals[:4], strict=True)), dict(zip(keys, vals[4:], strict=True))
        out = hyper_gp((xt, zt), (x, z), fv, gv, f_depth=3, g_depth=3, z_kind="rbf")
        return out["nngp"], out["ntk"]

    def mlp(*vals):
        out = mlp_gp(xt, x, dict(zip(keys, vals, strict=True)), depth=3, kind="rbf")
        return out["nngp"], out["ntk"]

    inputs = [t.clone().requires_grad_() for t in (*f.values(), *g.values())]
    assert torch.autograd.gradcheck(hyper, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradcheck(mlp, inputs[:4], eps=1e-6, atol=1e-6, rtol=1e-5)
    # the symmetric matrix (rho = 1 on its diagonal) has finite gradients too
    gk = MLPGPKernel(5, 3, bias_var=0.1)
    gk(x).sum().backward()
    grads = [p.grad for p in gk.parameters() if p.grad is not None]
    assert len(grads) == 3 and all(bool(torch.isfinite(gr).all()) for gr in grads)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="bias_var: expected non-negative"):
        MLPGPKernel(3, 2, bias_var=-1.0)
    with pytest.raises(ValueError, match="weight_var: expected non-negative"):
        MLPGPKernel(3, 2, weight_var=float("nan"))
    with pytest.raises(ValueError, match="get"):
        MLPGPKernel(3, 2, get=("nngp", "ntk"))
    x = torch.randn(10, 3, dtype=DT)
    with pytest.raises(ValueError, match="noise"):
        fit_hyperparameters(MLPGPKernel(3, 2), x, x[:, 0], noise=0.0)
    with pytest.raises(ValueError, match="fixed: unknown"):
        fit_hyperparameters(MLPGPKernel(3, 2), x, x[:, 0], fixed=("sigma",))


def test_marginal_likelihood_recovers_known_hyperparameters():
    """y drawn from a known NNGP (depth 2, σ_w² = 3, σ_b² = (0, 0.5)) plus noise 0.01; the
    fitted weight variance and noise land within three standard errors of the truth."""
    g = torch.Generator().manual_seed(0)
    n = 300
    x = torch.randn(n, 3, generator=g, dtype=DT)
    true = MLPGPKernel(3, 2, weight_var=3.0, bias_var=0.0)
    with torch.no_grad():
        true.raw_bias_var[1] = torch.log(torch.expm1(torch.tensor(0.5, dtype=DT)))
        k = true(x) + 0.01 * torch.eye(n, dtype=DT)
        y = torch.linalg.cholesky(k) @ torch.randn(n, 3, generator=g, dtype=DT)
    est = MLPGPKernel(3, 2, weight_var=1.0)
    with torch.no_grad():
        est.raw_bias_var.copy_(true.raw_bias_var)
    fit = fit_hyperparameters(
        est, x, y, noise=0.05, steps=250, lr=0.05, fixed=("bias_var", "input_scale", "lengthscale")
    )
    w, se_w = fit.values["weight_var"][0], fit.standard_errors["weight_var"][0]
    assert fit.history[-1] > fit.history[0]
    assert 0 < se_w < 1.0 and abs(w - 3.0) < 3 * se_w
    se_n = fit.standard_errors["noise"][0]
    assert abs(fit.noise - 0.01) < 3 * se_n


@pytest.mark.skipif(not HAVE_GPYTORCH, reason="GPyTorch is not installed (hyperlab[gpytorch])")
def test_gpytorch_kernel_in_an_exact_gp_and_botorch():
    import gpytorch

    from hyperlab.kernels.gpytorch import NeuralKernel

    x, z = _data(20)
    u = torch.cat([x, z], 1)
    hk = HyperKernel(5, 2, 3, 3, z_kernel="rbf")
    k = NeuralKernel(hk, "ntk")
    assert _rel(k(u).to_dense(), hk((x, z), get="ntk")) < 1e-10
    assert k(u, diag=True).shape == (20,)
    constraints = [n for n, _ in k.named_constraints()]
    assert "raw_g_weight_var_constraint" in constraints
    y = torch.sin(x[:, 0])

    class GP(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(u, y, gpytorch.likelihoods.GaussianLikelihood())
            self.cov = NeuralKernel(hk, "nngp")

        def forward(self, t):
            return gpytorch.distributions.MultivariateNormal(
                torch.zeros(len(t), dtype=DT), self.cov(t)
            )

    model = GP().double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = -mll(model(u), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    if importlib.util.find_spec("botorch") is not None:
        from botorch.models import SingleTaskGP

        gp = SingleTaskGP(u, y[:, None], covar_module=NeuralKernel(hk, "nngp"))
        assert gp.posterior(u[:3]).mean.shape == (3, 1)


@pytest.mark.skipif(not HAVE_GPYTORCH, reason="GPyTorch is not installed (hyperlab[gpytorch])")
def test_the_stochastic_fit_for_large_n_agrees_with_the_exact_one():
    """GPyTorch's CG + stochastic log-determinant path (what method='auto' uses above
    EXACT_MAX points), forced at N = 300: its log-likelihood is the exact one's to 1 %, and the
    fitted weight variance lands within half a standard error of the exact fit's."""
    g = torch.Generator().manual_seed(0)
    n = 300
    x = torch.randn(n, 3, generator=g, dtype=DT)
    with torch.no_grad():
        k = MLPGPKernel(3, 2, weight_var=3.0)(x)
        y = torch.linalg.cholesky(k + 0.01 * torch.eye(n, dtype=DT)) @ torch.randn(
            n, generator=g, dtype=DT
        )
    noise = torch.tensor(0.01, dtype=DT)
    torch.manual_seed(0)
    exact = log_marginal_likelihood(k, y, noise)
    est = log_marginal_likelihood_stochastic(k, y, noise, probes=30)
    assert abs(float(est - exact)) < 0.01 * abs(float(exact))
    fits = {
        m: fit_hyperparameters(MLPGPKernel(3, 2, weight_var=1.0), x, y, noise=0.05, steps=150,
                               fixed=("bias_var", "input_scale", "lengthscale"), method=m)
        for m in ("cholesky", "stochastic")
    }  # fmt: skip
    assert fits["stochastic"].method == "stochastic" and fits["cholesky"].method == "cholesky"
    w = {m: f.values["weight_var"][0] for m, f in fits.items()}
    se = fits["cholesky"].standard_errors["weight_var"][0]
    assert abs(w["stochastic"] - w["cholesky"]) < 0.5 * se, (w, se)
    with pytest.raises(ValueError, match="method: expected"):
        fit_hyperparameters(MLPGPKernel(3, 2), x, y, method="lanczos")


def test_the_stochastic_path_without_gpytorch_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "linear_operator", None)  # import raises ImportError
    k = torch.eye(3, dtype=DT)
    with pytest.raises(ImportError, match=r"hyperlab\[gpytorch\].*method='cholesky'"):
        log_marginal_likelihood_stochastic(k, torch.ones(3, dtype=DT), torch.tensor(0.1))
