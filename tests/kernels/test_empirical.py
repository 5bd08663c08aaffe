"""Empirical kernels: Jacobian vs NTK-vector products vs factorised hyperkernel; Taylor terms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperlab.hypernet import HyperModel
from hyperlab.kernels import HyperKernel
from hyperlab.kernels.empirical import empirical_ntk, hyper_ntk, module_ntk, taylor_terms
from hyperlab.primary import MLP

DT = torch.float64


def _mlp(out: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 7), nn.Tanh(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, out)
    ).to(DT)


def _manual_ntk(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ps = [p for p in module.parameters() if p.requires_grad]

    def jac(inp):
        rows = []
        for xi in inp:
            out = module(xi[None]).reshape(-1)
            rows.append(
                torch.stack(
                    [
                        torch.cat(
                            [g.reshape(-1) for g in torch.autograd.grad(o, ps, retain_graph=True)]
                        )
                        for o in out
                    ]
                )
            )
        return torch.stack(rows)  # (N, O, P)

    return torch.einsum("iap,jbp->ijab", jac(x), jac(y))


@pytest.mark.parametrize("out", [1, 3])
def test_module_ntk_methods_agree(out):
    net = _mlp(out)
    x = torch.randn(9, 3, dtype=DT)
    y = torch.randn(4, 3, dtype=DT)
    ref = _manual_ntk(net, x, y)
    ref = ref[..., 0, 0] if out == 1 else ref
    for method in ("jacobian", "ntk_vp"):
        for chunk in (2, 64):
            k = module_ntk(net, x, y, method=method, chunk_size=chunk)
            assert k.shape == ref.shape
            torch.testing.assert_close(k, ref, rtol=1e-12, atol=1e-12)
    sym = module_ntk(net, x, chunk_size=4)
    torch.testing.assert_close(sym, module_ntk(net, x, x, method="ntk_vp"), rtol=1e-12, atol=1e-12)


def test_empirical_ntk_functional_and_primary():
    mlp = MLP([3, 6, 2], "relu", parameterization="ntk")
    params = mlp.init_params(dtype=DT)
    x = torch.randn(5, 3, dtype=DT)
    k1 = empirical_ntk(lambda p, xi: mlp(xi, p), params, x)
    k2 = empirical_ntk(lambda p, xi: mlp(xi, p), params, x, method="ntk_vp", chunk_size=2)
    assert k1.shape == (5, 5, 2, 2)
    torch.testing.assert_close(k1, k2, rtol=1e-12, atol=1e-12)


def _hyper(bias: bool, hidden=(12, 9), head: str = "full") -> HyperModel:
    torch.manual_seed(1)
    g = MLP([2, 5, 4, 1], "relu", bias=bias, parameterization="ntk")
    kw = dict(parameterization="ntk") if head == "full" else dict(head="chunked", chunk_size=16)
    return HyperModel(g, 3, hidden, bias=bias, **kw).to(DT)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("hidden", [(12, 9), ()])
def test_factorised_hyperkernel_matches_direct_jacobian(bias, hidden):
    model = _hyper(bias, hidden)
    x = torch.randn(7, 3, dtype=DT)
    z = torch.randn(7, 2, dtype=DT)
    x2, z2 = torch.randn(4, 3, dtype=DT), torch.randn(4, 2, dtype=DT)
    direct = hyper_ntk(model, x=x, z=z, x2=x2, z2=z2, method="jacobian")
    vp = hyper_ntk(model, x=x, z=z, x2=x2, z2=z2, method="ntk_vp", chunk_size=3)
    fact = hyper_ntk(model, x=x, z=z, x2=x2, z2=z2, chunk_size=3)
    torch.testing.assert_close(vp, direct, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(fact, direct, rtol=1e-11, atol=1e-12)
    sym = hyper_ntk(model, x=x, z=z, chunk_size=2)
    torch.testing.assert_close(
        sym, hyper_ntk(model, x=x, z=z, method="jacobian"), rtol=1e-11, atol=1e-12
    )
    assert torch.equal(sym, sym.T)


def test_factorised_hyperkernel_chunked_head():
    model = _hyper(True, (10,), head="chunked")
    x, z = torch.randn(5, 3, dtype=DT), torch.randn(5, 2, dtype=DT)
    torch.testing.assert_close(
        hyper_ntk(model, x=x, z=z),
        hyper_ntk(model, x=x, z=z, method="jacobian"),
        rtol=1e-11,
        atol=1e-12,
    )


@pytest.mark.parametrize("bias", [False, True])
def test_empirical_hyperkernel_approaches_analytic(bias):
    """Eq. 13: K^h → Θ^h; the mean over a few wide draws is close, a narrow one is not.

    With biases, f's are trained from zero and g's are generated (HyperKernel.from_model)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, generator=g, dtype=DT)
    z = torch.randn(4, 2, generator=g, dtype=DT)
    x, z = x / x.norm(dim=1, keepdim=True) * 3**0.5, z / z.norm(dim=1, keepdim=True) * 2**0.5
    errs = []
    for n, m in ((8, 4), (256, 64)):
        ks = []
        for seed in range(16):
            torch.manual_seed(seed)
            gm = MLP([2, m, m, 1], "relu", bias=bias, parameterization="ntk")
            model = HyperModel(gm, 3, (n,), parameterization="ntk", bias=bias).to(DT)
            ks.append(hyper_ntk(model, x=x, z=z))
        hk = HyperKernel.from_model(model)
        assert (hk.f.bias, hk.g_bias) == (bias, bias)
        exact = hk((x, z), get="ntk")
        errs.append(float((torch.stack(ks).mean(0) - exact).abs().max() / exact.abs().max()))
    # single draws are heavy-tailed (powers of f's empirical NNGP): a loose bound on the mean
    assert errs[1] < errs[0] and errs[1] < 0.25, errs


def test_taylor_terms_first_and_second_order():
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).to(DT)
    x = torch.randn(3, 2, dtype=DT)
    k = taylor_terms(net, x, orders=(1, 2, 3))
    torch.testing.assert_close(k[1], module_ntk(net, x), rtol=1e-12, atol=1e-12)
    names = [n for n, _ in net.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    shapes = [p.shape for p in net.parameters()]

    def h_flat(w, i):
        ps, o = {}, 0
        for n, s in zip(names, shapes, strict=True):
            ps[n] = w[o : o + s.numel()].reshape(s)
            o += s.numel()
        return torch.func.functional_call(net, ps, (x[i : i + 1],)).reshape(())

    grads = torch.stack([torch.func.grad(h_flat)(flat0, j) for j in range(3)])
    for i in range(3):
        hess = torch.func.hessian(h_flat)(flat0, i)
        for j in range(3):
            v = grads[j]
            torch.testing.assert_close(k[2][i, j], v @ hess @ v, rtol=1e-10, atol=1e-12)
            third = torch.func.jacfwd(torch.func.hessian(h_flat))(flat0, i)
            torch.testing.assert_close(
                k[3][i, j], torch.einsum("abc,a,b,c->", third, v, v, v), rtol=1e-10, atol=1e-12
            )


def test_taylor_terms_hypermodel_runs():
    model = _hyper(False, (6,))
    x, z = torch.randn(3, 3, dtype=DT), torch.randn(3, 2, dtype=DT)
    k = taylor_terms(model, x=x, z=z, orders=(1, 2, 3, 4))
    assert set(k) == {1, 2, 3, 4} and all(v.shape == (3, 3) for v in k.values())
    torch.testing.assert_close(k[1], hyper_ntk(model, x=x, z=z), rtol=1e-10, atol=1e-12)
    # g has 3 generated layers, so h is a polynomial of degree 4 in f's head and trunk (ReLU
    # pieces fixed): every order up to 4 is finite and nonzero in general
    assert all(torch.isfinite(v).all() for v in k.values())


def test_bad_inputs():
    net = _mlp()
    x = torch.randn(4, 3, dtype=DT)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        module_ntk(net, bad)
    with pytest.raises(ValueError, match="per-sample shape"):
        module_ntk(net, x, torch.randn(4, 2, dtype=DT))
    with pytest.raises(ValueError, match="method"):
        module_ntk(net, x, method="exact")
    with pytest.raises(ValueError, match="chunk_size"):
        module_ntk(net, x, chunk_size=0)
    model = _hyper(False)
    with pytest.raises(ValueError, match="x \\(f's input\\)"):
        hyper_ntk(model, x=torch.randn(3, 4, dtype=DT), z=torch.randn(3, 2, dtype=DT))
    with pytest.raises(ValueError, match="same leading sample dimension"):
        hyper_ntk(model, x=torch.randn(3, 3, dtype=DT), z=torch.randn(2, 2, dtype=DT))
    with pytest.raises(ValueError, match="x2, z2: give both"):
        hyper_ntk(model, x=torch.randn(3, 3, dtype=DT), z=torch.randn(3, 2, dtype=DT),
                  x2=torch.randn(3, 3, dtype=DT))  # fmt: skip
    with pytest.raises(ValueError, match="either inputs or both x="):
        taylor_terms(model, x=torch.randn(3, 3, dtype=DT))
    with pytest.raises(ValueError, match="orders"):
        taylor_terms(net, x, orders=(0,))
