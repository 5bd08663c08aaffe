"""Neural kernels: the analytic NNGP/NTK of an MLP and a hypernetwork (Thm 2, 3), the
empirical NTK of a finite hypernetwork, kernel regression through the one front door (dense
Cholesky, matrix-free CG, 'auto'), hyperparameters by marginal likelihood, and the kernel
inside GPyTorch where it is installed.

    python examples/kernels_tour.py           # N = 2,000
    python examples/kernels_tour.py --tiny    # N = 200
"""

from __future__ import annotations

import argparse
import importlib.util

import torch

from hyperlab import MLP, HyperModel
from hyperlab.kernels import CGOptions, HyperKernel, MLPKernel, fit_kernel_regression, hyper_ntk
from hyperlab.kernels.gp import HyperGPKernel, fit_hyperparameters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    n = 200 if a.tiny else a.n
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)  # f's input (the condition)
    z = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1  # g's input
    y = torch.sin(3 * z[:, 0] * x[:, 0]) + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    xt, zt = x[:50] + 0.1, z[:50]

    mk = MLPKernel(6, 3)
    print(
        "MLP NNGP / NTK at (x0, x1):",
        float(mk(x[:2], get="nngp")[0, 1]),
        float(mk(x[:2], get="ntk")[0, 1]),
    )
    hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=0.5)
    k = hk((x[:4], z[:4]), get=("nngp", "ntk"))
    print("hyperkernel (Thm 3) 4x4 block diagonal:", k["ntk"].diagonal().tolist())

    # the empirical NTK of a finite hypernetwork (Eq. 12) next to its infinite-width limit
    torch.manual_seed(0)
    model = HyperModel(
        MLP([2, 256, 256, 1], parameterization="ntk"), 6, [256, 256], parameterization="ntk"
    ).double()
    emp = hyper_ntk(model, x=x[:4], z=z[:4])
    limit = HyperKernel.from_model(model)((x[:4], z[:4]), get="ntk")  # the same architecture
    print(
        "empirical / infinite-width hyperkernel at (u0, u1), width 256:",
        round(float(emp[0, 1]) / float(limit[0, 1]), 3),
    )

    # Eq. 18 through the one front door: the solvers agree
    dense = fit_kernel_regression(hk, (x, z), y, get="ntk", solver="cholesky")
    cg = fit_kernel_regression(
        hk, (x, z), y, get="ntk", solver="cg", cg=CGOptions(tol=1e-10, rank=100)
    )
    auto = fit_kernel_regression(hk, (x, z), y, get="ntk")
    pd, pc = dense.predict((xt, zt)).mean, cg.predict((xt, zt)).mean
    print(
        f"CG: {cg.iterations} iterations; dense vs CG predictions differ by "
        f"{float((pd - pc).norm() / pd.norm()):.1e}; auto chose {auto.solver} ({auto.reason})"
    )
    post = fit_kernel_regression(hk, (x, z), y, get="nngp").predict((xt, zt), variance=True)
    print(
        f"NNGP posterior: mean RMSE {float((post.mean - y[:50]).pow(2).mean().sqrt()):.3f}, "
        f"mean variance {float(post.variance.mean()):.4f}"
    )

    # hyperparameters by marginal likelihood (the NNGP of the hypernetwork, z's lengthscale)
    gp = HyperGPKernel.from_analytic(hk, "nngp")
    u = torch.cat([x, z], 1)[: min(n, 400)]
    fit = fit_hyperparameters(
        gp,
        u,
        y[: len(u)],
        steps=30 if a.tiny else 150,
        lr=0.05,
        fixed=(
            "f_input_scale",
            "f_lengthscale",
            "f_bias_var",
            "g_input_scale",
            "g_bias_var",
            "f_weight_var",
        ),
    )
    print(
        f"fitted: z lengthscale {fit.values['g_lengthscale'][0]:.3f} ± "
        f"{fit.standard_errors['g_lengthscale'][0]:.3f}, noise {fit.noise:.4f}; "
        f"log marginal likelihood {fit.history[0]:.1f} -> {fit.history[-1]:.1f}"
    )
    if importlib.util.find_spec("gpytorch"):
        from hyperlab.kernels.gpytorch import NeuralKernel

        cov = NeuralKernel(hk, "ntk")
        gap = float((cov(u[:5]).to_dense().detach() - hk((x[:5], z[:5]), get="ntk")).abs().max())
        print(f"inside GPyTorch: the same hyperkernel, max |difference| from hyperlab's {gap:.1e}")
    print(f"example=kernels_tour metric=cg_iterations value={cg.iterations}")


if __name__ == "__main__":
    main()
