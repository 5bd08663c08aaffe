"""Gauge fixing (Sec. 3.2.2): same function, idempotent, one representative per class."""

import pytest
import torch

from hyperlab import MLP, ConvNet
from hyperlab.generative.gauge import (
    filter_mean_squares,
    gauge_fix,
    layers_of,
    random_symmetry,
)


def small_convnet():
    return ConvNet((1, 12, 12), channels=(4, 3), hidden=(5,), out_features=6, kernel_size=3)


def random_params(primary, batch, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return {
        s.name: scale * torch.randn(*batch, *s.shape, generator=g) for s in primary.layout.specs
    }


PRIMARIES = {
    "paper-mnist": lambda: ConvNet(),
    "small-conv": small_convnet,
    "mlp": lambda: MLP([7, 9, 5, 4]),
    "leaky-mlp": lambda: MLP([7, 9, 5, 4], activation="leaky_relu"),
}


@pytest.fixture(autouse=True)
def _double():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("name", list(PRIMARIES))
@pytest.mark.parametrize("quirk", [False, True])
def test_same_function_on_random_networks(name, quirk):
    primary = PRIMARIES[name]()
    params = random_params(primary, (3,), scale=0.5)
    x = torch.rand(3, 4, *primary.in_shape)
    fixed = gauge_fix(primary, params, authors_sum_quirk=quirk)
    before, after = primary(x, params), primary(x, fixed)
    # logits move by a per-network constant only; probabilities are unchanged
    assert torch.allclose(before.log_softmax(-1), after.log_softmax(-1), atol=1e-10)
    shift = (after - before)[..., :1]
    assert torch.allclose(after - before, shift.expand_as(after), atol=1e-10)
    if not quirk:  # mean-subtraction: logit biases sum to zero
        last = layers_of(primary.layout)[-1]
        assert torch.allclose(fixed[last.bias.name].sum(-1), torch.zeros(3), atol=1e-12)


@pytest.mark.parametrize("name", list(PRIMARIES))
def test_constraint_and_idempotent(name):
    primary = PRIMARIES[name]()
    params = random_params(primary, (2, 2), seed=1)
    fixed = gauge_fix(primary, params)
    for ms in filter_mean_squares(primary, fixed):
        assert torch.allclose(ms, torch.ones_like(ms), atol=1e-7)
    again = gauge_fix(primary, fixed)
    for k in fixed:
        assert torch.allclose(again[k], fixed[k], atol=1e-7), k


@pytest.mark.parametrize("name", list(PRIMARIES))
def test_symmetry_orbit_maps_to_one_representative(name):
    primary = PRIMARIES[name]()
    params = random_params(primary, (2,), seed=2)
    moved = random_symmetry(primary, params, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(moved[primary.layout.names[0]], params[primary.layout.names[0]])
    a, b = gauge_fix(primary, params), gauge_fix(primary, moved)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-7), k


def test_sum_quirk_does_not_remove_logit_shift():
    primary = small_convnet()
    params = random_params(primary, (1,), seed=4)
    moved = random_symmetry(primary, params, generator=torch.Generator().manual_seed(5))
    a = gauge_fix(primary, params, authors_sum_quirk=True)["fc1.bias"]
    b = gauge_fix(primary, moved, authors_sum_quirk=True)["fc1.bias"]
    assert not torch.allclose(a, b, atol=1e-6)


def test_relu_and_pool_exactness_float32_paper_target():
    primary = ConvNet()
    params = {k: v.float() for k, v in primary.init_params((2,)).items()}
    x = torch.rand(2, 8, 1, 28, 28, dtype=torch.float32)
    fixed = gauge_fix(primary, params)
    assert torch.equal(primary(x, params).argmax(-1), primary(x, fixed).argmax(-1))
    assert torch.allclose(
        primary(x, params).log_softmax(-1), primary(x, fixed).log_softmax(-1), atol=1e-4
    )


def test_differentiable():
    primary = MLP([3, 4, 2])
    params = {k: v.requires_grad_() for k, v in random_params(primary, (2,)).items()}
    fixed = gauge_fix(primary, params)
    grads = torch.autograd.grad(primary.layout.flatten(fixed).sum(), list(params.values()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_rejects_non_homogeneous_and_foreign_primaries():
    with pytest.raises(ValueError, match="primary"):
        gauge_fix(MLP([3, 4, 2], activation="tanh"), random_params(MLP([3, 4, 2]), ()))
    with pytest.raises(TypeError, match="primary"):
        gauge_fix(torch.nn.Linear(2, 2), {})
    with pytest.raises(ValueError, match="params"):
        gauge_fix(MLP([3, 4, 2]), {"fc0.weight": torch.zeros(4, 3)})
