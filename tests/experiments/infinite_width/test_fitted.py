"""Table 1 with fitted kernels: the marginal likelihood finds a known lengthscale, the solve
with the fitted kernel matches a direct one, and the experiment's rows and claims."""

from __future__ import annotations

import torch

from hyperlab.experiments import run_experiment
from hyperlab.experiments.infinite_width.fitted import FREE, fit_kernel, solve_fitted
from hyperlab.kernels import HyperKernel
from hyperlab.kernels.gp import HyperGPKernel

DT = torch.float64


def _data(n: int, lengthscale: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 5, generator=g, dtype=DT)
    x = x / x.norm(dim=1, keepdim=True)
    z = torch.rand(n, 2, generator=g, dtype=DT) * 6
    truth = HyperGPKernel(5, 2, 2, 2, get="nngp", z_kernel="rbf", lengthscale=lengthscale)
    with torch.no_grad():
        k = truth(torch.cat([x, z], 1)) + 1e-3 * torch.eye(n, dtype=DT)
        y = torch.linalg.cholesky(k) @ torch.randn(n, generator=g, dtype=DT)
    return x, z, y


def test_the_marginal_likelihood_finds_the_lengthscale_and_the_fit_predicts():
    x, z, y = _data(200, lengthscale=2.5)
    start = HyperKernel(5, 2, 2, 2, z_kernel="rbf", lengthscale=1.0)  # the wrong lengthscale
    gp, fit = fit_kernel(start, "nngp", (x, z), y, points=200, steps=150, noise=1e-2,
                         generator=torch.Generator().manual_seed(1))  # fmt: skip
    ell, se = fit.values["g_lengthscale"][0], fit.standard_errors["g_lengthscale"][0]
    assert fit.history[-1] > fit.history[0]
    assert abs(ell - 2.5) < max(3 * se, 0.3), (ell, se)
    assert set(FREE) <= set(fit.values)
    assert fit.values["f_weight_var"] == gp.values()["f_weight_var"].tolist()  # held
    # the solve: the same as a Cholesky of the fitted kernel by hand
    predict = solve_fitted(gp, fit.noise, (x[:150], z[:150]), y[:150])
    with torch.no_grad():
        u, ut = torch.cat([x[:150], z[:150]], 1), torch.cat([x[150:], z[150:]], 1)
        k = gp(u) + fit.noise * torch.eye(150, dtype=DT)
        ref = gp(ut, u) @ torch.linalg.solve(k, y[:150])
    torch.testing.assert_close(predict((x[150:], z[150:])), ref, rtol=1e-6, atol=1e-8)


def test_table1_gains_fitted_rows_and_no_claims_for_them(data_root, tmp_path):
    result = run_experiment(
        "infinite-width-representation",
        preset="tiny",
        overrides={
            "fit_hyperparameters": True,
            "fit_points": 30,
            "fit_steps": 5,
            "hn_runs": 0,
            "variants": ["s_weighted"],
        },  # fmt: skip
        data_dir=data_root,
        out_dir=tmp_path,
        progress=False,
    )
    rows = [r[0] for r in result["comparison"]]
    assert any("(s_weighted+fitted)" in r for r in rows)
    assert not any("fitted" in c["claim"] for c in result["claims"])
    fitted = [s["fitted"] for s in result["metrics"]["solves"] if "fitted" in s]
    assert fitted and {"noise", *FREE} <= set(fitted[0]["HK"])
