"""Batched functional primaries: equality with a loop of single forwards, layout, errors."""

import math

import pytest
import torch
from torch import nn

from hyperlab.modules import ModulePrimary
from hyperlab.primary import ACTIVATIONS, MLP, ConvNet, ParamLayout, ParamSpec


def loop_forward(primary, x, params, batch):
    """Reference: one parameter set at a time, in a Python loop."""
    flat_p = {k: v.reshape(-1, *primary.layout[k].shape) for k, v in params.items()}
    b = flat_p[next(iter(flat_p))].shape[0]
    xs = x.reshape(b, *x.shape[len(batch) :])
    outs = [primary(xs[i], {k: v[i] for k, v in flat_p.items()}) for i in range(b)]
    return torch.stack(outs).reshape(*batch, *outs[0].shape)


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "identity"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_mlp_batched_equals_loop(activation, bias, parameterization):
    if activation == "sine" and parameterization == "ntk":
        pytest.skip("a SIREN has its own init (refused under ntk: tested below)")
    g = MLP([7, 5, 4, 3], activation, bias=bias, parameterization=parameterization)
    gen = torch.Generator().manual_seed(0)
    for batch, group in [((6,), ()), ((6,), (4,)), ((2, 3), (4,)), ((2, 3), (2, 2))]:
        params = g.init_params(batch, generator=gen)
        x = torch.randn(*batch, *group, 7, generator=gen)
        out = g(x, params)
        assert out.shape == (*batch, *group, 3)
        torch.testing.assert_close(out, loop_forward(g, x, params, batch), rtol=1e-5, atol=1e-6)


def test_mlp_unbatched_matches_nn_linear_stack():
    g = MLP([4, 6, 2], "tanh")
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    params = {
        "fc0.weight": net[0].weight,
        "fc0.bias": net[0].bias,
        "fc1.weight": net[2].weight,
        "fc1.bias": net[2].bias,
    }
    x = torch.randn(9, 4)
    torch.testing.assert_close(g(x, params), net(x))


def test_convnet_layout_is_the_papers_target_and_batched_equals_loop():
    g = ConvNet()
    assert g.layout.numel == 832 + 12816 + 6280 + 90 == 20018
    gen = torch.Generator().manual_seed(1)
    params = g.init_params((3,), generator=gen)
    x = torch.randn(3, 2, 1, 28, 28, generator=gen)
    torch.testing.assert_close(g(x, params), loop_forward(g, x, params, (3,)), rtol=1e-4, atol=1e-5)


def test_convnet_matches_torch_layers():
    g = ConvNet(in_shape=(3, 9, 9), channels=(4,), hidden=(), out_features=5, kernel_size=3)
    conv, fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 5 * 5, 5)
    params = {"conv0.weight": conv.weight, "conv0.bias": conv.bias}
    params |= {"fc0.weight": fc.weight, "fc0.bias": fc.bias}
    x = torch.randn(2, 3, 9, 9)
    ref = fc(nn.functional.max_pool2d(torch.relu(conv(x)), 2, ceil_mode=True).flatten(1))
    torch.testing.assert_close(g(x, params), ref)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)))


def test_module_adapter_names_and_batched_equals_loop():
    m = Small()
    g = ModulePrimary(m, (1, 6, 6))
    assert g.layout.names == tuple(n for n, _ in m.named_parameters())
    assert g.layout["conv.weight"].fan_in == 9 and g.layout["head.1.bias"].role == "bias"
    assert sum(1 for _ in g.parameters()) == 0  # wrapping adds no trainables
    torch.testing.assert_close(
        g(torch.ones(2, 1, 6, 6), g.module_params()), m(torch.ones(2, 1, 6, 6))
    )
    params = g.init_params((4,), generator=torch.Generator().manual_seed(2))
    x = torch.randn(4, 3, 1, 6, 6)
    torch.testing.assert_close(g(x, params), loop_forward(g, x, params, (4,)))


def test_layout_flatten_roundtrip_and_fans():
    layout = ParamLayout(
        [ParamSpec("a", (2, 3), "weight", 3, 2), ParamSpec("b", (2,), "bias", 3, 2)]
    )
    flat = torch.arange(2 * 8.0).reshape(2, 8)
    d = layout.unflatten(flat)
    assert d["a"].shape == (2, 2, 3) and d["b"].shape == (2, 2)
    torch.testing.assert_close(layout.flatten(d), flat)


def test_ntk_preactivations_are_unit_scale_at_init():
    """Eq. 2-3 of the infinite-width paper: with N(0,1) weights and √2-scaled ReLU, every layer's
    pre-activation has second moment ≈ E[x²] at any width."""
    torch.manual_seed(0)
    width = 512
    g = MLP([64, width, width, width, 1], "relu", bias=False, parameterization="ntk")
    params = g.init_params((32,))
    x = torch.randn(32, 64, 64)  # E[x²] = 1
    h = x
    for i in range(g.depth):
        w = params[f"fc{i}.weight"]
        h = torch.einsum("bni,boi->bno", h, w) / math.sqrt(g.sizes[i])
        assert 0.8 < h.pow(2).mean().item() < 1.25, (i, h.pow(2).mean().item())
        h = g._post(h, i)
    torch.testing.assert_close(h, g(x, params), rtol=1e-4, atol=1e-4)


def test_bad_inputs_name_the_argument():
    g = MLP([5, 4, 2])
    p = g.init_params((3,))
    with pytest.raises(ValueError, match=r"params\['fc0.weight'\]"):
        g(torch.randn(3, 5), {**p, "fc0.weight": torch.randn(3, 4, 6)})
    with pytest.raises(ValueError, match="missing"):
        g(torch.randn(3, 5), {k: v for k, v in p.items() if k != "fc1.bias"})
    with pytest.raises(ValueError, match=r"x: expected shape"):
        g(torch.randn(3, 6), p)
    with pytest.raises(ValueError, match="leading dims"):
        g(torch.randn(4, 5), p)
    with pytest.raises(ValueError, match="batch shape"):
        g(torch.randn(3, 5), {**p, "fc1.bias": torch.randn(2, 2)})
    bad = torch.randn(3, 5)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="x: contains NaN"):
        g(bad, p)
    bad[1, 2] = -float("inf")
    with pytest.raises(ValueError, match="x: contains NaN or infinite"):
        g(bad, p)
    huge = torch.full((3, 5), 3e38)  # finite, but its float32 sum overflows: not an error
    g(huge, p)
    with pytest.raises(ValueError, match="activation"):
        MLP([2, 2], "swishy")
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])


def test_bound_primary_is_a_regular_module():
    g = MLP([3, 4, 1])
    m = g.bind(generator=torch.Generator().manual_seed(0))
    assert [n for n, _ in m.named_parameters()] == list(g.layout.names)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    loss0 = nn.functional.mse_loss(m(x), y)
    for _ in range(50):
        opt.zero_grad()
        loss = nn.functional.mse_loss(m(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < loss0.item()
    # torch.func composes with it
    out = torch.func.functional_call(m, dict(m.named_parameters()), (x,))
    torch.testing.assert_close(out, m(x))


def test_hidden_activations_select_which_layers_are_nonlinear():
    """[True, False]: ReLU after the first layer only, the second hidden layer is linear."""
    g = MLP([4, 5, 6, 3], bias=False, hidden_activations=[True, False])
    params = g.init_params(generator=torch.Generator().manual_seed(0))
    x = torch.randn(7, 4)
    h = torch.relu(x @ params["fc0.weight"].T) @ params["fc1.weight"].T
    torch.testing.assert_close(g(x, params), h @ params["fc2.weight"].T)
    with pytest.raises(ValueError, match="hidden_activations: expected 2 bools"):
        MLP([4, 5, 6, 3], hidden_activations=[True])


def test_raw_integer_images_and_a_wrong_adapter_shape_are_named_errors():
    from hyperlab import HyperModel, ModulePrimary

    g = MLP([4, 3, 2])
    params = g.init_params()
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor, got torch.uint8"):
        g(torch.zeros(5, 4, dtype=torch.uint8), params)
    h = HyperModel(g, 6, [8])
    with pytest.raises(
        TypeError, match=r"cond: expected a floating-point tensor.*x.float\(\) / 255"
    ):
        h(torch.zeros(5, 4), torch.zeros(5, 6, dtype=torch.uint8))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with pytest.raises(
        ValueError, match=r"in_shape: the module rejects an input of shape \(1, 28\)"
    ):
        ModulePrimary(net, in_shape=(28,))


@pytest.mark.parametrize("per_set", [True, False])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_convnet_fast_path_equals_the_plain_grouped_conv(activation, per_set):
    """Channels-last conv and pool-before-activation, one parameter set after another (the
    CPU default) or grouped, give the reference forward's outputs and gradients (float64, so
    only the order of float operations could differ)."""
    torch.manual_seed(0)
    g = ConvNet(in_shape=(1, 12, 12), channels=(4, 3), hidden=(5,), out_features=3,
                activation=activation).double()  # fmt: skip
    params = {k: v.requires_grad_() for k, v in g.init_params(batch_shape=(3,)).items()}
    params = {k: v.double().detach().requires_grad_() for k, v in params.items()}
    x = torch.randn(3, 4, 1, 12, 12, dtype=torch.float64)
    fast = g._forward_batched(x, params, per_set=per_set)
    outs = [fast, g._forward_batched(x, params, reference=True)]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    grads = [torch.autograd.grad(o.square().sum(), list(params.values())) for o in outs]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_elu_gain_keeps_the_second_moment():
    from hyperlab.primary import activation_fn, activation_gain

    u = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0))
    g = activation_gain("elu")
    assert float((g * activation_fn("elu")(u)).pow(2).mean()) == pytest.approx(1.0, abs=5e-3)


def test_siren_mlp_is_sin_omega0_with_sirens_init():
    from hyperlab import HyperNetwork
    from hyperlab.modules import Sine

    g = MLP([2, 32, 32, 1], "sine", omega0=30.0)
    p = g.init_params(generator=torch.Generator().manual_seed(0))
    assert float(p["fc0.weight"].abs().max()) <= 1 / 2
    assert float(p["fc1.weight"].abs().max()) <= (6 / 32) ** 0.5 / 30
    net = nn.Sequential(nn.Linear(2, 32), Sine(30.0), nn.Linear(32, 32), Sine(30.0),
                        nn.Linear(32, 1))  # fmt: skip
    with torch.no_grad():
        for i, lin in enumerate([net[0], net[2], net[4]]):
            lin.weight.copy_(p[f"fc{i}.weight"])
            lin.bias.copy_(p[f"fc{i}.bias"])
    x = torch.rand(5, 2) * 2 - 1
    torch.testing.assert_close(g(x, p), net(x))
    theta = HyperNetwork(g, 6, [64])(torch.randn(256, 6))
    want = g.layout["fc1.weight"].std
    assert float(theta["fc1.weight"].std()) == pytest.approx(want, rel=0.2)
    with pytest.raises(ValueError, match="parameterization"):
        MLP([2, 3, 1], "sine", parameterization="ntk")
