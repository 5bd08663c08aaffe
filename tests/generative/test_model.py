"""Generator G: z -> θ (Sec. 3.3, App. A.7): layout, sizes, forward equivalence, loss."""

import functools

import pytest
import torch

from hyperlab import MLP, ConvNet
from hyperlab.generative import GenerativeHyperNetwork, generative_loss
from hyperlab.generative.gauge import gauge_fix


def small_convnet():
    return ConvNet((1, 12, 12), channels=(4, 3), hidden=(5,), out_features=6, kernel_size=3)


def test_paper_sizes():
    gen = GenerativeHyperNetwork(ConvNet())
    counts = gen.parameter_counts()
    # App. A.7 / notes C.2: 631,240 weights + 2,400 batch-norm parameters, no biases
    assert counts["total"] == 633_640
    assert counts["extractor"] == 436_500 + 1_200
    assert counts["generator_conv0"] == 3_240 + 160
    assert counts["generator_conv1"] == 91_600 + 400
    assert counts["generator_fc0"] == 90_000 + 400
    assert counts["generator_fc1"] == 9_900 + 240
    assert gen.extractor.sizes == [300, 300, 300, 855]
    assert [g.sizes for g in gen.generators] == [
        [15, 40, 40, 26],
        [15, 100, 100, 801],
        [15, 100, 100, 785],
        [15, 60, 60, 90],
    ]
    assert not any(isinstance(m, torch.nn.Linear) and m.bias is not None for m in gen.modules())


@pytest.mark.parametrize(
    "primary",
    [ConvNet(), small_convnet(), MLP([6, 7, 3]), MLP([6, 7, 5, 3], bias=False)],
    ids=["paper", "small-conv", "mlp", "mlp-nobias"],
)
def test_shapes_match_layout(primary):
    gen = GenerativeHyperNetwork(primary, noise_dim=11, extractor_hidden=(13,), code_size=4)
    z = gen.sample_noise(6)
    assert z.shape == (6, 11) and z.abs().max() <= 1.0
    params = gen(z)
    assert list(params) == list(primary.layout.names)
    for s in primary.layout.specs:
        assert params[s.name].shape == (6, *s.shape)
    assert primary.layout.batch_shape(params) == (6,)
    nested = gen(z.reshape(2, 3, 11))
    assert primary.layout.batch_shape(nested) == (2, 3)


def test_forward_equals_target_run_with_those_weights():
    torch.manual_seed(0)
    primary = ConvNet()
    gen = GenerativeHyperNetwork(primary).eval()
    with torch.no_grad():
        params = gen(gen.sample_noise(3))
        x = torch.rand(3, 5, 1, 28, 28)
        batched = primary(x, params)
        for i in range(3):
            single = {k: v[i] for k, v in params.items()}
            bound = primary.bind(single)
            h = x[i]
            for j in range(2):
                h = torch.nn.functional.conv2d(
                    h, single[f"conv{j}.weight"], single[f"conv{j}.bias"], padding=2
                )
                h = torch.nn.functional.max_pool2d(h.relu(), 2, ceil_mode=True)
            h = torch.nn.functional.linear(h.flatten(1), single["fc0.weight"], single["fc0.bias"])
            h = torch.nn.functional.linear(h.relu(), single["fc1.weight"], single["fc1.bias"])
            assert torch.allclose(batched[i], h, atol=1e-5)
            assert torch.allclose(batched[i], bound(x[i]), atol=1e-5)


def test_filters_share_one_generator():
    """Two filters of a layer with equal codes get equal weights (parameter sharing)."""
    primary = small_convnet()
    gen = GenerativeHyperNetwork(primary, noise_dim=5, extractor_hidden=(8,), code_size=3).eval()
    with torch.no_grad():
        gen.extractor.linears[-1].weight[3:6] = gen.extractor.linears[-1].weight[0:3]
        params = gen(gen.sample_noise(2))
    w = params["conv0.weight"]
    assert torch.allclose(w[:, 0], w[:, 1]) and not torch.allclose(w[:, 0], w[:, 2])


def test_noise_changes_weights_and_is_seeded():
    gen = GenerativeHyperNetwork(small_convnet(), noise_dim=5, extractor_hidden=(8,))
    a = gen.sample_noise(4, generator=torch.Generator().manual_seed(1))
    b = gen.sample_noise(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    gen.eval()
    with torch.no_grad():
        p = gen(a)
    assert not torch.allclose(p["conv0.weight"][0], p["conv0.weight"][1])


def test_loss_backward_and_parts():
    torch.manual_seed(1)
    primary = small_convnet()
    gen = GenerativeHyperNetwork(primary, noise_dim=5, extractor_hidden=(8,), code_size=3)
    x = torch.rand(4, 3, 1, 12, 12)
    y = torch.randint(0, 6, (4, 3))
    for estimator in ("authors", "kl"):
        loss, parts = generative_loss(gen, x, y, lam=10.0, estimator=estimator)
        loss.backward()
        assert set(parts) == {"ce", "entropy", "accuracy"}
        assert torch.isclose(loss, 10.0 * parts["ce"] - parts["entropy"])
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gen.parameters())


def test_bfloat16_target_moves_only_the_target_forward():
    torch.manual_seed(2)
    gen = GenerativeHyperNetwork(small_convnet(), noise_dim=5, extractor_hidden=(8,), code_size=3)
    x, y = torch.rand(4, 3, 1, 12, 12), torch.randint(0, 6, (4, 3))
    z = gen.sample_noise(4)
    out = {}
    for dtype in (None, torch.bfloat16):
        gen.zero_grad()
        loss, parts = generative_loss(gen, x, y, lam=10.0, z=z, target_dtype=dtype)
        loss.backward()
        out[dtype] = parts, [p.grad.clone() for p in gen.parameters()]
    (p32, g32), (p16, g16) = out[None], out[torch.bfloat16]
    assert p16["ce"].dtype == torch.float32
    assert p16["entropy"] == p32["entropy"]  # the generator and entropy stay float32
    assert p16["ce"] != p32["ce"] and torch.isclose(p16["ce"], p32["ce"], rtol=2e-2)
    cos = [torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), 0) for a, b in
           zip(g32, g16, strict=True) if a.abs().sum() > 0]  # fmt: skip
    assert min(cos) > 0.95


def test_step_matches_the_plain_grouped_conv_step():
    """The paper's target (App. A.6) at a small batch: hyperlab's step (channels-last conv,
    pool before ReLU, autograd-free neighbour search) gives the plain grouped-conv step's loss
    and generator gradients to float32 tolerance (benchmarks/generative_step.py times both)."""
    torch.manual_seed(4)
    x, y = torch.rand(4, 6, 1, 28, 28), torch.randint(0, 10, (4, 6))
    out = []
    for reference in (False, True):
        g = ConvNet()
        if reference:
            g._forward_batched = functools.partial(ConvNet._forward_batched, g, reference=True)
        gen = GenerativeHyperNetwork(g, 300, generator=torch.Generator().manual_seed(0))
        z = gen.sample_noise(4, generator=torch.Generator().manual_seed(1))
        loss, _ = generative_loss(gen, x, y, lam=1e3, z=z)
        loss.backward()
        out.append((loss.detach(), [p.grad for p in gen.parameters()]))
    (loss, grads), (ref_loss, ref_grads) = out
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5 * b.abs().max().item())


def test_gauge_fixed_generated_network_same_function():
    primary = ConvNet()
    gen = GenerativeHyperNetwork(primary).eval()
    with torch.no_grad():
        params = gen(gen.sample_noise(2))
        fixed = gauge_fix(primary, params)
        x = torch.rand(2, 4, 1, 28, 28)
        a, b = primary(x, params), primary(x, fixed)
    assert torch.allclose(a.log_softmax(-1), b.log_softmax(-1), atol=1e-4)


def test_errors_name_argument():
    with pytest.raises(TypeError, match="primary"):
        GenerativeHyperNetwork(torch.nn.Linear(2, 2))
    gen = GenerativeHyperNetwork(MLP([2, 3]), noise_dim=4, extractor_hidden=(5,))
    with pytest.raises(ValueError, match="z"):
        gen(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="code_size"):
        GenerativeHyperNetwork(MLP([2, 3, 2]), code_size=[1, 2, 3])
    with pytest.raises(ValueError, match="weight_generator_hidden"):
        GenerativeHyperNetwork(MLP([2, 3, 2]), weight_generator_hidden=[(4,)])
    with pytest.raises(ValueError, match="images/labels"):
        generative_loss(gen, torch.zeros(2, 3, 2), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("train", [True, False])
def test_bn_offset_scale_is_a_reparameterisation(train):
    from hyperlab.generative.model import _BatchNorm

    torch.manual_seed(2)
    ref = torch.nn.BatchNorm1d(5, eps=1e-7, momentum=0.02)
    new = _BatchNorm(5, 1e-7, 0.02, offset_scale=30.0)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 2)
        ref.bias.normal_()
        new.weight.copy_(ref.weight)
        new.bias.copy_(ref.bias / 30.0)
    ref.train(train)
    new.train(train)
    for _ in range(3):
        x = torch.randn(16, 5) * 3 + 1
        assert torch.allclose(ref(x), new(x), atol=1e-5)
    assert torch.allclose(ref.running_mean, new.running_mean)
    assert torch.allclose(ref.running_var, new.running_var)


def test_precise_bn_uses_batch_statistics_of_fresh_noise():
    from hyperlab.generative.model import recalibrate_batch_norm

    torch.manual_seed(4)
    gen = GenerativeHyperNetwork(MLP([3, 4, 2]), noise_dim=6, extractor_hidden=(7,), code_size=2)
    recalibrate_batch_norm(
        gen, n_batches=1, batch_size=4096, generator=torch.Generator().manual_seed(0)
    )
    assert not gen.training
    z = gen.sample_noise(4096, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eval_out = gen(z)
        gen.train()
        train_out = gen(z)
    for k in eval_out:  # running stats = that batch's stats (up to unbiased vs biased variance)
        assert torch.allclose(eval_out[k], train_out[k], atol=1e-3), k
