"""Analytic kernels against Monte Carlo estimates of wide finite NTK-parameterised networks."""

from __future__ import annotations

import math

import pytest
import torch

from hyperlab.hypernet import HyperModel
from hyperlab.kernels import FourierFeatures, HyperKernel, MLPKernel, input_kernel, rbf_kernel
from hyperlab.kernels.analytic import ArcCosine
from hyperlab.primary import MLP

DT = torch.float64


DX, DZ, N = 3, 2, 5
SLOPE = 0.2  # leaky-ReLU slope in the Monte Carlo tests (far enough from ReLU to matter)
WIDE_NTK = (1024, 32, 16)  # (f width, g width, draws) of the hyperkernel Monte Carlo


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, DX, generator=g, dtype=DT)
    z = torch.randn(N, DZ, generator=g, dtype=DT)
    # varied norms, so the q-normalisation of the arc-cosine maps is exercised
    x = (
        x
        / x.norm(dim=1, keepdim=True)
        * math.sqrt(DX)
        * torch.linspace(0.7, 1.3, N, dtype=DT)[:, None]
    )
    z = (
        z
        / z.norm(dim=1, keepdim=True)
        * math.sqrt(DZ)
        * torch.linspace(1.2, 0.8, N, dtype=DT)[:, None]
    )
    return x, z


def _rel_err(est: torch.Tensor, exact: torch.Tensor) -> float:
    return float((est - exact).abs().max() / exact.abs().max())


def _mlp_mc(width: int, depth: int, activation: str, draws: int, seed: int, bias: bool = False):
    """(NNGP, NTK) of an NTK-parameterised MLP averaged over ``draws`` networks.

    NNGP is Rao-Blackwellised over the readout: E[h h' | features] = a·a'/n. The NTK is the
    exact per-network Jacobian contraction, all networks in one batched forward.
    """
    torch.manual_seed(seed)
    x, _ = _inputs()
    mlp = MLP(
        [DX, *[width] * (depth - 1), 1],
        activation,
        bias=bias,
        parameterization="ntk",
        negative_slope=SLOPE,
    )
    params = mlp.init_params((draws,), dtype=DT)
    trunk = MLP(
        [DX, *[width] * (depth - 1)],
        activation,
        bias=bias,
        negative_slope=SLOPE,
        parameterization="ntk",
        activate_output=True,
    )
    feats = trunk(
        x.expand(draws, N, DX), {k: v for k, v in params.items() if k in trunk.layout.names}
    )
    nngp = (feats @ feats.transpose(1, 2)).mean(0) / width
    leaves = {k: v.requires_grad_(True) for k, v in params.items()}
    out = mlp(x.expand(draws, N, DX), leaves)[..., 0]  # (draws, N)
    grads = []
    for i in range(N):
        gi = torch.autograd.grad(out[:, i].sum(), list(leaves.values()), retain_graph=True)
        grads.append(torch.cat([g.reshape(draws, -1) for g in gi], 1))
    jac = torch.stack(grads, 1)  # (draws, N, P)
    ntk = (jac @ jac.transpose(1, 2)).mean(0)
    return nngp, ntk


@pytest.mark.parametrize(("activation", "bias"), [("relu", False), ("leaky_relu", True)])
def test_mlp_kernels_match_monte_carlo(activation, bias):
    x, _ = _inputs()
    exact = MLPKernel(DX, 3, activation=activation, negative_slope=SLOPE, bias=bias)(x)
    errs = {}
    for width, draws in ((32, 32), (512, 32)):
        nngp, ntk = _mlp_mc(width, 3, activation, draws, seed=1, bias=bias)
        errs[width] = (_rel_err(nngp, exact["nngp"]), _rel_err(ntk, exact["ntk"]))
    assert errs[512][0] < errs[32][0] and errs[512][1] < errs[32][1], errs
    assert errs[512][0] < 0.05 and errs[512][1] < 0.05, errs


def test_leaky_relu_map_matches_quadrature():
    act = ArcCosine(slope=0.2, gain=1.3)
    g = torch.Generator().manual_seed(0)
    a, b, k = 1.5, 0.7, -0.6
    cov = torch.tensor([[a, k], [k, b]], dtype=DT)
    u = torch.randn(2_000_000, 2, generator=g, dtype=DT) @ torch.linalg.cholesky(cov).T
    phi = torch.where(u > 0, u, 0.2 * u) * 1.3
    dphi = torch.where(u > 0, 1.0, 0.2) * 1.3
    out, dot = act(torch.tensor(k, dtype=DT), torch.tensor(math.sqrt(a * b), dtype=DT))
    assert abs(float(out) - float((phi[:, 0] * phi[:, 1]).mean())) < 5e-3
    assert abs(float(dot) - float((dphi[:, 0] * dphi[:, 1]).mean())) < 5e-3


def _hyper_mc(n: int, m: int, draws: int, seed: int, f_depth: int = 3, g_depth: int = 3):
    """MC NNGP of h = g(z; f(x)): f's trunk and g's hidden layers finite (widths n, m).

    Given f's last features e, every generated weight is A e/√n with A ~ N(0, 1), i.e. a
    Gaussian vector over the N inputs with covariance E = e eᵀ/n: sampled exactly through the
    Cholesky factor of E (no n × N_g head needed). The readout V^H is averaged analytically.
    """
    torch.manual_seed(seed)
    x, z = _inputs()
    ft = MLP(
        [DX, *[n] * (f_depth - 1)], "relu", bias=False, parameterization="ntk", activate_output=True
    )
    e = ft(x.expand(draws, N, DX), ft.init_params((draws,), dtype=DT))
    cov = e @ e.transpose(1, 2) / n
    chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(N, dtype=DT))
    gt = MLP(
        [DZ, *[m] * (g_depth - 1)], "relu", bias=False, parameterization="ntk", activate_output=True
    )
    xi = torch.randn(draws, gt.layout.numel, N, dtype=DT)
    theta = torch.einsum("pij,pkj->pik", chol, xi)  # (draws, N, N_g-trunk)
    a = gt(z.expand(draws, N, DZ), gt.layout.unflatten(theta))  # (draws, N, m)
    return (cov * (a @ a.transpose(1, 2)) / m).mean(0)


def test_hyper_nngp_matches_monte_carlo():
    x, z = _inputs()
    exact = HyperKernel(DX, DZ, 2, 3)((x, z), get="nngp")
    released = HyperKernel(DX, DZ, 2, 3, variant="released")((x, z), get="nngp")
    est = {(n, m): _hyper_mc(n, m, 200, seed=2, f_depth=2) for n, m in ((64, 16), (4096, 128))}
    errs = {k: _rel_err(v, exact) for k, v in est.items()}
    assert errs[(4096, 128)] < errs[(64, 16)], errs
    assert errs[(4096, 128)] < 0.04, errs
    assert _rel_err(est[(4096, 128)], released) > 5 * errs[(4096, 128)]  # released form rejected


def _hyper_ntk_mc(n: int, m: int, draws: int, seed: int):
    """Mean empirical hyperkernel of ``draws`` hypernetworks f = [d_x, n, N_g], g = [d_z, m, m, 1].

    All draws run as one batched forward (f and g are functional MLPs with a leading batch of
    parameter sets). The gradient w.r.t. f's linear head A is G ⊗ e/√n (G = ∂g/∂θ), so its part
    of the kernel is (e·e'/n)(G·G') exactly; the trunk part comes from autograd.
    """
    torch.manual_seed(seed)
    x, z = _inputs()
    g = MLP([DZ, m, m, 1], "relu", bias=False, parameterization="ntk")
    trunk = MLP([DX, n], "relu", bias=False, parameterization="ntk", activate_output=True)
    w1 = trunk.init_params((draws,), dtype=DT)["fc0.weight"].requires_grad_(True)
    head = torch.randn(draws, g.layout.numel, n, dtype=DT)
    e = trunk(x.expand(draws, N, DX), {"fc0.weight": w1})  # (draws, N, n)
    theta = e @ head.transpose(1, 2) / math.sqrt(n)  # (draws, N, N_g)
    out = g(z.expand(draws, N, DZ), g.layout.unflatten(theta))[..., 0]
    (grad_theta,) = torch.autograd.grad(out.sum(), theta, retain_graph=True)
    k_head = (e @ e.transpose(1, 2)) / n * (grad_theta @ grad_theta.transpose(1, 2))
    rows = [
        torch.autograd.grad(out[:, i].sum(), w1, retain_graph=True)[0].reshape(draws, -1)
        for i in range(N)
    ]
    jac = torch.stack(rows, 1)
    return (k_head.detach() + jac @ jac.transpose(1, 2)).mean(0)


def test_hyperkernel_matches_monte_carlo():
    x, z = _inputs()
    exact = HyperKernel(DX, DZ, 2, 3)((x, z), get="ntk")
    released = HyperKernel(DX, DZ, 2, 3, variant="released")((x, z), get="ntk")
    est = {(n, m): _hyper_ntk_mc(n, m, draws, seed=4) for n, m, draws in ((32, 8, 32), WIDE_NTK)}
    errs = {k: _rel_err(v, exact) for k, v in est.items()}
    wide = WIDE_NTK[:2]
    assert errs[wide] < errs[(32, 8)], errs
    assert errs[wide] < 0.1, errs
    assert _rel_err(est[wide], released) > 3 * errs[wide]  # the released form is rejected


@pytest.mark.parametrize(("activation", "g_bias"), [("relu", False), ("leaky_relu", True)])
def test_theta_g_sequential_limit_s_weighted(activation, g_bias):
    """Θ^g at f = ∞ (θ ~ GP(S) exactly, Thm 3's sequential limit): S-weighted form wins."""
    x, z = _inputs()
    kw = dict(g_activation=activation, negative_slope=SLOPE, g_bias=g_bias)
    hk = HyperKernel(DX, DZ, 3, 3, **kw)
    s = MLPKernel(DX, 3)(x, get="nngp")
    chol = torch.linalg.cholesky(s)
    theta_f = MLPKernel(DX, 3)(x, get="ntk")
    exact = hk((x, z))
    released = HyperKernel(DX, DZ, 3, 3, variant="released", **kw)((x, z))
    errs = {}
    for m, draws in ((16, 200), (128, 200)):
        torch.manual_seed(6)
        g = MLP(
            [DZ, m, m, 1], activation, bias=g_bias, parameterization="ntk", negative_slope=SLOPE
        )
        xi = torch.randn(draws, g.layout.numel, N, dtype=DT)
        theta = torch.einsum("ij,pkj->pik", chol, xi).requires_grad_(True)
        out = g(z.expand(draws, N, DZ), g.layout.unflatten(theta))[..., 0]
        (grad,) = torch.autograd.grad(out.sum(), theta)  # row i depends on θ(x_i) only
        est = torch.einsum("pik,pjk->ij", grad, grad) / draws
        est_nngp = (out[:, :, None] * out[:, None, :]).mean(0).detach()
        errs[m] = (
            _rel_err(est, exact["ntk"] / theta_f),
            _rel_err(est, released["ntk"] / theta_f),
            _rel_err(est_nngp, exact["nngp"]),
        )
    assert errs[128][0] < errs[16][0] and errs[128][0] < 0.03, errs
    assert errs[128][1] > 3 * errs[128][0], errs
    assert errs[128][2] < 0.1, errs  # plain (not Rao-Blackwellised) NNGP estimate: noisier


# --- structure: symmetry, PSD, tiling, diagonals, errors ---------------------------------


def test_symmetric_psd_and_tiling_independent():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(70, DX, generator=g, dtype=DT)
    z = torch.randn(70, DZ, generator=g, dtype=DT)
    for variant in ("s_weighted", "released"):
        hk = HyperKernel(DX, DZ, 3, 3, variant=variant, z_kernel="rbf")
        full = hk((x, z), block_size=1000)
        tiled = hk((x, z), block_size=16)
        cross = hk((x, z), (x, z), block_size=23)
        for k in ("nngp", "ntk"):
            assert full[k].dtype == DT and full[k].shape == (70, 70)
            # off the diagonal tiling changes nothing; on it, arccos near cos = 1 amplifies the
            # GEMM's rounding (which depends on the tile shape) to ~sqrt(eps) relative
            off = ~torch.eye(70, dtype=torch.bool)
            for other in (tiled[k], cross[k]):
                torch.testing.assert_close(full[k][off], other[off], rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(full[k].diagonal(), other.diagonal(), rtol=1e-7,
                                           atol=0)  # fmt: skip
            assert torch.equal(full[k], full[k].T)
            assert float(torch.linalg.eigvalsh(full[k]).min()) > -1e-9 * float(full[k].max())
    mk = MLPKernel(DX, 4, activation="leaky_relu")(x, block_size=9)
    for k in ("nngp", "ntk"):
        assert torch.equal(mk[k], mk[k].T)
        assert float(torch.linalg.eigvalsh(mk[k]).min()) > -1e-9 * float(mk[k].max())


def test_diagonal_check_values():
    x = torch.randn(6, 4, dtype=DT)
    x = x / x.norm(dim=1, keepdim=True) * 2.0  # Σ⁰(x, x) = 1
    k = MLPKernel(4, 3)(x)
    torch.testing.assert_close(torch.diagonal(k["nngp"]), torch.ones(6, dtype=DT))
    torch.testing.assert_close(torch.diagonal(k["ntk"]), torch.full((6,), 3.0, dtype=DT))
    z = torch.randn(6, 2, dtype=DT)
    hk = HyperKernel(4, 2, 3, 3, z_kernel="rbf")((x, z))
    torch.testing.assert_close(torch.diagonal(hk["nngp"]), torch.ones(6, dtype=DT))
    torch.testing.assert_close(torch.diagonal(hk["ntk"]), torch.full((6,), 9.0, dtype=DT))


def test_get_single_and_from_model():
    x, z = _inputs()
    model = HyperModel(
        MLP([DZ, 8, 1], "relu", bias=False, parameterization="ntk"),
        DX,
        (16, 16),
        parameterization="ntk",
        bias=False,
    )
    hk = HyperKernel.from_model(model)
    assert (hk.f.depth, hk.g_depth, hk.f.bias, hk.g_bias) == (3, 2, False, False)
    both = hk((x, z))
    torch.testing.assert_close(hk((x, z), get="ntk"), both["ntk"])
    torch.testing.assert_close(hk((x, z), get=("nngp",))["nngp"], both["nngp"])
    mk = MLPKernel.from_primary(MLP([DX, 8, 8, 1], "leaky_relu", parameterization="ntk"))
    assert mk.depth == 3 and mk.bias and abs(mk.act.slope - 0.01) < 1e-12


def test_bad_inputs_raise_clear_errors():
    x, z = _inputs()
    hk = HyperKernel(DX, DZ, 2, 2)
    with pytest.raises(ValueError, match="u1\\[0\\].*expected shape \\(N, 3\\)"):
        hk((x[:, :2], z))
    with pytest.raises(ValueError, match="u2\\[1\\]"):
        hk((x, z), (x, z[:, :1]))
    with pytest.raises(ValueError, match="same number of rows"):
        hk((x, z[:3]))
    bad = x.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        hk((bad, z))
    with pytest.raises(ValueError, match="NaN"):
        MLPKernel(DX, 2)(x, bad)
    with pytest.raises(ValueError, match="activation"):
        MLPKernel(DX, 2, activation="tanh")
    with pytest.raises(ValueError, match="activation"):
        HyperKernel.from_model(
            HyperModel(
                MLP([DZ, 4, 1], "tanh", parameterization="ntk"), DX, (8,), parameterization="ntk"
            )
        )
    with pytest.raises(ValueError, match="get"):
        MLPKernel(DX, 2)(x, get="cov")
    with pytest.raises(ValueError, match="variant"):
        HyperKernel(DX, DZ, 2, 2, variant="paper")
    with pytest.raises(ValueError, match="depth"):
        MLPKernel(DX, 0)
    with pytest.raises(TypeError, match="pair"):
        hk(x)


# --- Fourier features (Remarks 2-3) --------------------------------------------------------


def test_fourier_features_converge_to_rbf():
    g = torch.Generator().manual_seed(8)
    z = torch.randn(6, 2, generator=g, dtype=DT)
    exact = rbf_kernel(z, z)
    errs = []
    for k in (256, 65536):
        ff = FourierFeatures(2, k, generator=torch.Generator().manual_seed(9), dtype=DT)
        p = ff(z)
        errs.append(float((p @ p.T / k - exact).abs().max()))
    assert errs[1] < errs[0] and errs[1] < 0.02, errs
    torch.testing.assert_close(ff.limit_kernel(z, z), exact)
    with pytest.raises(ValueError, match="z: expected shape"):
        ff(torch.randn(3, 5))


def test_kernels_depend_on_z_only_through_distance():
    """Remarks 2-3: with Fourier features, Λ and Θ^g are functions of exp(-‖z - z'‖²/2)."""
    g = torch.Generator().manual_seed(10)
    x = torch.randn(1, DX, generator=g, dtype=DT).expand(4, DX)
    z = torch.randn(4, DZ, generator=g, dtype=DT)
    shift = torch.randn(1, DZ, generator=g, dtype=DT)
    rot = torch.linalg.qr(torch.randn(DZ, DZ, generator=g, dtype=DT))[0]
    hk = HyperKernel(DX, DZ, 3, 4, z_kernel="rbf")
    base = hk((x, z))
    moved = hk((x, z @ rot.T + shift))
    for k in ("nngp", "ntk"):
        torch.testing.assert_close(base[k], moved[k], rtol=1e-9, atol=1e-12)
    # the finite-feature network input converges to the same kernel
    ff = FourierFeatures(DZ, 200_000, generator=torch.Generator().manual_seed(11), dtype=DT)
    k_in = input_kernel(ff(z), ff(z))
    assert float((k_in - rbf_kernel(z, z)).abs().max()) < 0.02


def _authors_hyperkernel(x, z, clip: float):
    """A direct re-implementation of the released code's recursion (notes B.3), in numpy:
    compute_f_kernel(depth=2) on unit-normalised rows, compute_g_kernel with the RBF of
    variance 2 and g depth 2, hyperkernel = Θ^f ⊙ NTK_g, NNGP = K^depth (no S factors)."""
    import numpy as np

    def amap(lam):
        lam = np.clip(np.sign(lam) * (np.abs(lam) - clip), -1.0, 1.0)
        sig = (lam * (np.pi - np.arccos(lam)) + np.sqrt(np.abs(1 - lam**2))) / np.pi
        return sig, (np.pi - np.arccos(lam)) / np.pi

    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sig = xn @ xn.T
    sigs, dots = [sig], []
    for _ in range(2):
        sig, dot = amap(sig)
        sigs.append(sig)
        dots.append(dot)
    ntk_f = sum(sigs[i] * np.prod(dots[i:], axis=0) for i in range(3))
    s = sigs[-1]
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 / (2 * 2.0))
    ks, gdots = [k], []
    for _ in range(2):
        k, gdot = amap(k * s)
        ks.append(k)
        gdots.append(gdot)
    ntk_g = sum(ks[i] * np.prod(gdots[i:], axis=0) for i in range(3))
    return {"nngp": ks[-1], "ntk": ntk_f * ntk_g}


def test_released_variant_matches_the_authors_recursion():
    """HyperKernel(variant='released') against the released recursion re-implemented directly
    (image-like x, integer pixel coordinates z, RBF lengthscale √2 as in Table 1)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(9, 20, generator=g, dtype=DT)
    z = torch.randint(0, 28, (9, 2), generator=g).to(DT)
    hk = HyperKernel(20, 2, 3, 3, z_kernel="rbf", lengthscale=math.sqrt(2.0), variant="released")
    ours = hk((x * math.sqrt(20) / x.norm(dim=1, keepdim=True), z))
    exact = _authors_hyperkernel(x.numpy(), z.numpy(), clip=0.0)
    off = ~torch.eye(9, dtype=torch.bool)
    for k in ("nngp", "ntk"):
        ref = torch.from_numpy(exact[k])
        torch.testing.assert_close(ours[k][off], ref[off], rtol=1e-10, atol=1e-12)
        # at ρ = 1 arccos turns rounding of ~1e-16 in ρ into ~1e-8
        torch.testing.assert_close(ours[k].diagonal(), ref.diagonal(), rtol=1e-6, atol=0)
    # the released code's clipping of arccos arguments by 1e-4 (a numerical guard we leave out)
    # moves the largest NTK entries by 1.6 % (measured here), the NNGP's by less
    clipped = _authors_hyperkernel(x.numpy(), z.numpy(), clip=1e-4)
    for k in ("nngp", "ntk"):
        rel = (ours[k] - torch.from_numpy(clipped[k])).abs().max() / ours[k].abs().max()
        assert float(rel) < 0.03, (k, float(rel))


def test_tiles_across_threads_give_the_one_thread_result():
    """With two torch threads tiles run concurrently, each on one thread: bit-identical."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, DX, generator=g, dtype=DT)
    z = torch.randn(50, DZ, generator=g, dtype=DT)
    hk = HyperKernel(DX, DZ, 3, 3, z_kernel="rbf")
    one = hk((x, z), block_size=16)
    cross1 = hk((x, z), (x[:7], z[:7]), block_size=16)
    torch.set_num_threads(2)  # the autouse fixture restores one thread afterwards
    two = hk((x, z), block_size=16)
    assert torch.get_num_threads() == 2
    cross2 = hk((x, z), (x[:7], z[:7]), block_size=16)
    for k in ("nngp", "ntk"):
        assert torch.equal(one[k], two[k]) and torch.equal(cross1[k], cross2[k])


def test_repeated_x_uses_distinct_f_kernels_with_the_same_result(monkeypatch):
    """Table 1's inputs repeat each image: f's kernels on the distinct images, gathered per
    tile, give the kernels computed pair by pair."""
    import hyperlab.kernels.analytic as analytic

    g = torch.Generator().manual_seed(11)
    x = torch.randn(12, DX, generator=g, dtype=DT).repeat_interleave(6, 0)  # 12 images x 6
    z = torch.randint(0, 28, (72, DZ), generator=g).to(DT)
    xt, zt = x[::5][:7], torch.randint(0, 28, (7, DZ), generator=g).to(DT)
    for variant in ("s_weighted", "released"):
        hk = HyperKernel(DX, DZ, 3, 3, z_kernel="rbf", lengthscale=1.5, variant=variant)
        fast = hk((x, z), block_size=16), hk((xt, zt), (x, z), block_size=16)
        monkeypatch.setattr(analytic, "MAX_DISTINCT_PAIRS", 0)  # pair by pair
        slow = hk((x, z), block_size=16), hk((xt, zt), (x, z), block_size=16)
        monkeypatch.undo()
        for a, b in zip(fast, slow, strict=True):
            for k in ("nngp", "ntk"):
                torch.testing.assert_close(a[k], b[k], rtol=1e-7, atol=1e-12)


def test_float32_tiles_close_to_float64():
    g = torch.Generator().manual_seed(12)
    x = torch.randn(40, DX, generator=g, dtype=DT).repeat_interleave(2, 0)
    z = torch.randint(0, 28, (80, DZ), generator=g).to(DT)
    hk = HyperKernel(DX, DZ, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
    k64, k32 = hk((x, z)), hk((x, z), dtype=torch.float32)
    for k in ("nngp", "ntk"):
        assert k32[k].dtype == torch.float32
        err = float((k32[k].double() - k64[k]).abs().max() / k64[k].abs().max())
        assert 0 < err < 5e-3  # arccos near ρ = 1 amplifies float32 rounding to ~sqrt(eps)
    with pytest.raises(ValueError, match="dtype"):
        hk((x, z), dtype=torch.float16)
