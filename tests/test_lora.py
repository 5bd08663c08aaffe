"""hyperlab.lora: per-weight-set low-rank deltas against a loop that runs the base with
W₀ + s·B·A substituted (float64), h = base at init, adapters, generate=, named errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from hyperlab import HyperModel, HyperNetwork
from hyperlab.lora import LoRAPrimary


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 36, 16)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(torch.relu(self.conv(x)).flatten(1))))


def _base(seed=0):
    torch.manual_seed(seed)
    return Small().double()


def _reference(base, g: LoRAPrimary, params, x):
    """Loop over weight sets: the base with each target's weight W₀ + s·B·A."""
    outs = []
    named = dict(base.named_parameters())
    for i in range(x.shape[0]):
        state = {n: p for n, p in named.items()}
        for lay in g.layers:
            a = params[f"{lay.name}.lora_A"][i]
            b = params[f"{lay.name}.lora_B"][i]
            w0 = named[f"{lay.name}.weight"]
            delta = (b @ a.reshape(a.shape[0], -1)).reshape(w0.shape)
            state[f"{lay.name}.weight"] = w0 + g.scale * delta
        for n in g.generated_whole:
            state[n] = params[n][i]
        outs.append(functional_call(base, state, (x[i],)))
    return torch.stack(outs)


@pytest.mark.parametrize("alpha", [None, 8.0])
def test_lora_forward_and_gradients_equal_the_substituted_loop(alpha):
    base = _base()
    g = LoRAPrimary(base, (1, 6, 6), targets=["conv", "fc*"], rank=2, alpha=alpha)
    assert [lay.name for lay in g.layers] == ["conv", "fc1", "fc2"]
    assert g.layout["conv.lora_A"].shape == (2, 1, 3, 3) and g.layout["fc1.lora_B"].shape == (16, 2)
    torch.manual_seed(1)
    params = {s.name: torch.randn(3, *s.shape, dtype=torch.float64, requires_grad=True)
              for s in g.layout}  # fmt: skip
    x = torch.randn(3, 4, 1, 6, 6, dtype=torch.float64)
    out, ref = g(x, params), _reference(base, g, params, x)
    torch.testing.assert_close(out, ref)
    w = torch.randn_like(out)
    ga = torch.autograd.grad((out * w).sum(), list(params.values()))
    gb = torch.autograd.grad((ref * w).sum(), list(params.values()))
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b)
    assert all(not p.requires_grad or p.grad is None for p in base.parameters())


def test_the_lora_head_starts_at_the_base_and_trains():
    base = _base().float()
    g = LoRAPrimary(base, (1, 6, 6), targets=["fc1", "fc2"], rank=4)
    h = HyperModel(g, 8, [32], head="lora")
    x, cond = torch.randn(6, 1, 6, 6), torch.randn(6, 8)
    torch.testing.assert_close(h(x, cond), base(x))  # B = 0 exactly at init
    theta = h.weights(cond)
    assert float(theta["fc1.lora_B"].detach().abs().max()) == 0.0
    assert float(theta["fc1.lora_A"].detach().std()) == pytest.approx(
        g.layout["fc1.lora_A"].std, rel=0.3)  # fmt: skip
    loss = h(x, cond).pow(2).mean()
    loss.backward()
    head = h.f.head
    assert head.head_b[0].grad is not None and float(head.head_b[0].grad.abs().sum()) > 0
    # per-sample: different conditions give different deltas after a step
    opt = torch.optim.SGD(h.parameters(), lr=0.5)
    opt.step()
    out = h(x, cond)
    assert not torch.allclose(out[0], base(x)[:1].squeeze(0))


def test_adapters_set_the_start_and_generate_adds_whole_tensors():
    base = _base().float()
    g = LoRAPrimary(base, (1, 6, 6), targets=["fc1"], rank=2, generate=["fc2.*"])
    assert g.generated_whole == ["fc2.weight", "fc2.bias"]
    counts = g.counts()
    assert counts["lora"] == 2 * 144 + 16 * 2 and counts["generated_whole"] == 16 * 5 + 5
    h = HyperModel(g, 3, [16], head="lora")
    torch.manual_seed(3)
    a, b = torch.randn(2, 144), torch.randn(16, 2)
    h.f.head.init_from({"fc1": (a, b)})
    x, cond = torch.randn(4, 1, 6, 6), torch.randn(4, 3)
    theta = h.weights(cond)
    torch.testing.assert_close(theta["fc1.lora_A"], a.expand(4, -1, -1))
    torch.testing.assert_close(theta["fc2.bias"], base.fc2.bias.detach().expand(4, -1))
    w0 = base.fc1.weight.detach()
    ref = HyperModel(LoRAPrimary(base, (1, 6, 6), targets=["fc1"], rank=2), 3, [4]).g
    out = h(x, cond)
    base_w = {"fc1.weight": w0 + b @ a}
    torch.testing.assert_close(out, functional_call(base, base_w, (x,)), rtol=1e-4, atol=1e-5)
    assert ref.scale == 1.0
    with pytest.raises(ValueError, match=r"adapters\['fc1'\]: expected A"):
        h.f.head.init_from({"fc1": (b, a)})


def test_a_frozen_base_from_a_state_dict():
    trained = _base(seed=5)
    fresh = _base(seed=9)
    fresh.load_state_dict(trained.state_dict())
    g = LoRAPrimary(fresh, (1, 6, 6), targets=["fc1"], rank=2)
    x = torch.randn(2, 3, 1, 6, 6, dtype=torch.float64)
    out = g(x, g.zero_params((2,)))
    torch.testing.assert_close(out, trained(x.reshape(6, 1, 6, 6)).reshape(2, 3, 5))


def test_attention_out_proj_is_formed_and_matches_the_loop():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).double().eval()
    g = LoRAPrimary(layer, (5, 8), targets=["self_attn.out_proj", "linear*"], rank=2)
    assert [lay.fused for lay in g.layers] == [False, True, True]
    g.eval()
    params = {s.name: torch.randn(3, *s.shape, dtype=torch.float64) for s in g.layout}
    x = torch.randn(3, 2, 5, 8, dtype=torch.float64)
    with torch.no_grad():  # the fused fast path must not bypass the LoRA forwards
        out = g(x, params)
        ref = _reference(layer, g, params, x)
    torch.testing.assert_close(out, ref)


def test_bad_lora_settings_are_named():
    base = _base()
    with pytest.raises(ValueError, match="targets: act is a ReLU"):
        LoRAPrimary(base, (1, 6, 6), targets=["act"], rank=2)
    with pytest.raises(ValueError, match="rank: 6 exceeds fc2's largest rank 5"):
        LoRAPrimary(base, (1, 6, 6), targets=["fc2"], rank=6)
    with pytest.raises(ValueError, match="targets: the pattern 'head' matches no module"):
        LoRAPrimary(base, (1, 6, 6), targets=["head"], rank=2)
    g = LoRAPrimary(base.float(), (1, 6, 6), targets=["fc1"], rank=2)
    with pytest.raises(ValueError, match="head='lora'"):
        HyperNetwork(g, 4, [8], head="chunked")
    with pytest.raises(TypeError, match="LoRAPrimary"):
        HyperNetwork(HyperNetwork.__init__.__globals__["MLP"]([3, 2]), 4, [8], head="lora")


def test_lora_on_a_batchnorm_base_is_the_loop_in_train_mode():
    import copy

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(3 * 16, 4)).double()  # fmt: skip
    g = LoRAPrimary(net, (1, 6, 6), targets=["0", "4"], rank=2).double()
    g.train()
    params = {s.name: torch.randn(3, *s.shape, dtype=torch.float64) for s in g.layout}
    x = torch.randn(3, 5, 1, 6, 6, dtype=torch.float64)
    out = g(x, params)
    ref_net = copy.deepcopy(net).train()
    ref = _reference(ref_net, g, params, x)  # one weight set after another, train mode
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g.get_buffer("1__running_mean"), ref_net[1].running_mean)
