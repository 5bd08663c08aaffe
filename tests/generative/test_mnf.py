"""MNF baseline (Louizos & Welling 2017; notes C.8): flows, sampling, KL bound, training."""

import pytest
import torch

from hyperlab import MLP, ConvNet
from hyperlab.generative.gauge import gauge_fix
from hyperlab.generative.mnf import MaskedRealNVP, MNFNetwork


def test_realnvp_logdet_matches_autograd_jacobian():
    torch.manual_seed(0)
    f = MaskedRealNVP(5, 7, parity=1).double()
    with torch.no_grad():
        for p in f.parameters():
            p.normal_(0, 0.5)
    z = torch.randn(3, 5, dtype=torch.float64)
    _, logdet = f(z)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: f(v[None])[0][0], z[i])
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-10)


def test_samples_follow_layout_and_kl_is_finite():
    torch.manual_seed(1)
    primary = ConvNet()
    mnf = MNFNetwork(primary)
    params, kl = mnf.sample(3)
    assert primary.layout.batch_shape(params) == (3,)
    assert kl.shape == (3,) and torch.isfinite(kl).all()
    assert not torch.allclose(params["conv1.weight"][0], params["conv1.weight"][1])
    x = torch.rand(3, 2, 1, 28, 28)
    out = primary(x, params)
    fixed = gauge_fix(primary, params)
    assert torch.allclose(out.log_softmax(-1), primary(x, fixed).log_softmax(-1), atol=1e-4)


def test_variance_threshold():
    mnf = MNFNetwork(MLP([3, 4, 2]), thres_var=0.5)
    with torch.no_grad():
        for m in mnf.mnf_layers:
            m.logvar_w.fill_(5.0)
            m.q0_logvar.fill_(-30.0)
    params, _ = mnf.sample(4000)
    w = params["fc0.weight"]
    # conditional on z ≈ its mean, the spread is the thresholded σ² = 0.5
    assert w.var(0).mean().item() == pytest.approx(0.5, rel=0.1)


def test_training_reduces_loss_on_a_small_problem():
    torch.manual_seed(2)
    primary = MLP([2, 16, 2])
    mnf = MNFNetwork(primary, flow_hidden=8)
    x = torch.randn(512, 2)
    y = (x[:, 0] * x[:, 1] > 0).long()
    opt = torch.optim.Adam(mnf.parameters(), 1e-2)
    first = None
    for _ in range(150):
        idx = torch.randint(0, 512, (64,))
        loss, parts = mnf.loss(x[idx].reshape(4, 16, 2), y[idx].reshape(4, 16), n_train=512)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = parts["nll"].item() if first is None else first
    with torch.no_grad():
        params, _ = mnf.sample(8)
        acc = (primary(x.expand(8, -1, -1), params).argmax(-1) == y).float().mean()
    assert acc.item() > 0.8 and parts["nll"].item() < first


def test_errors():
    with pytest.raises(TypeError, match="primary"):
        MNFNetwork(torch.nn.Linear(2, 2))
    mnf = MNFNetwork(MLP([2, 3]))
    with pytest.raises(ValueError, match="n"):
        mnf.sample(0)
    with pytest.raises(ValueError, match="images/labels"):
        mnf.loss(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), 10)


def test_sample_is_a_function_of_the_noise():
    torch.manual_seed(3)
    mnf = MNFNetwork(ConvNet((1, 12, 12), channels=(4, 3), hidden=(5,), kernel_size=3))
    eps = mnf.sample_noise(2, generator=torch.Generator().manual_seed(0))
    a, b = mnf(eps), mnf(eps)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert eps.shape == (2, mnf.noise_dim)
    with pytest.raises(ValueError, match="noise"):
        mnf.sample(3, eps)
