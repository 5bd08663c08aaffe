"""hyperlab.modules: any nn.Module as a primary, checked against a plain loop that runs the
module once per weight set with ``functional_call`` (outputs, gradients and BatchNorm running
statistics, in float64)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from hyperlab import HyperModel, HyperNetwork
from hyperlab.modules import ModulePrimary, Sine, siren_init_


class Net(nn.Module):
    """Conv, BatchNorm, GroupNorm, a 1×1 pooled map, Linear, LayerNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        h = self.gn(h)
        return self.ln(self.fc(self.pool(h).flatten(1)))


def _net(seed=0):
    torch.manual_seed(seed)
    return Net().double()


def _params(g: ModulePrimary, b: int, seed=1):
    torch.manual_seed(seed)
    base = g.module_params()
    return {k: (v + 0.3 * torch.randn(b, *v.shape, dtype=v.dtype)).requires_grad_()
            for k, v in base.items()}  # fmt: skip


def _loop(module: nn.Module, params, x, *, train: bool, ids=None, shared=None):
    """The reference: the module once per weight set (per condition its own copy, so its own
    running statistics), in order; returns outputs and the copies."""
    copies: dict[int, nn.Module] = {}
    outs = []
    for i in range(x.shape[0]):
        key = 0 if ids is None else int(ids[i])
        m = copies.setdefault(key, copy.deepcopy(module))
        m.train(train)
        p = {k: v[i] for k, v in params.items()}
        outs.append(functional_call(m, {**(shared or {}), **p}, (x[i],)))
    return torch.stack(outs), copies


def test_norm_roles_and_heads_start_norm_scales_at_one():
    g = ModulePrimary(_net().float(), (1, 6, 6))
    roles = {s.name: s.role for s in g.layout}
    assert roles["bn.weight"] == roles["gn.weight"] == roles["ln.weight"] == "scale"
    assert roles["bn.bias"] == roles["ln.bias"] == "shift" and roles["fc.bias"] == "bias"
    cond = torch.randn(5, 7)
    full = HyperNetwork(g, 7, [16])(cond)
    for name in ("bn.weight", "gn.weight", "ln.weight"):
        assert torch.equal(full[name], torch.ones_like(full[name]))  # hyperfan: exactly 1
    assert float(full["bn.bias"].detach().abs().max()) == 0.0
    chunked = HyperNetwork(g, 7, [16], head="chunked", chunk_size=16)(cond)
    assert abs(float(chunked["bn.weight"].mean()) - 1.0) < 0.2  # near 1, still conditioned
    # a generated network computes something (it was exactly 0 with scales at 0)
    out = g(torch.randn(5, 2, 1, 6, 6), full)
    assert float(out.abs().sum()) > 0


@pytest.mark.parametrize("bn_stats", ["shared", "per_condition"])
def test_batchnorm_train_mode_is_the_module_run_once_per_weight_set(bn_stats):
    module = _net()
    kw = {"n_conditions": 3} if bn_stats == "per_condition" else {}
    g = ModulePrimary(module, (1, 6, 6), bn_stats=bn_stats, **kw).double()
    b = 5
    params = _params(g, b)
    x = torch.randn(b, 4, 1, 6, 6, dtype=torch.float64)
    ids = torch.tensor([2, 0, 2, 1, 2]) if bn_stats == "per_condition" else None
    g.train()
    out = g(x, params, condition_ids=ids)
    ref, copies = _loop(module, params, x, train=True, ids=ids)
    torch.testing.assert_close(out, ref)
    w = torch.randn_like(ref)
    ga = torch.autograd.grad((out * w).sum(), list(params.values()))
    gb = torch.autograd.grad((ref * w).sum(), list(params.values()))
    for a, r in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, r)
    for key, m in copies.items():  # the running statistics each loop left behind
        mean = g.bn__running_mean if bn_stats == "shared" else g.bn__running_mean[key]
        var = g.bn__running_var if bn_stats == "shared" else g.bn__running_var[key]
        torch.testing.assert_close(mean, m.bn.running_mean)
        torch.testing.assert_close(var, m.bn.running_var)
    # eval: each weight set uses its statistics, as the copies in eval mode do
    g.eval()
    with torch.no_grad():
        out = g(x, params, condition_ids=ids)
    if bn_stats == "shared":
        ref, _ = _loop(copies[0], params, x, train=False)
    else:
        ref = torch.stack([functional_call(copies[int(ids[i])].eval(),
                                           {k: v[i] for k, v in params.items()}, (x[i],))
                           for i in range(b)])  # fmt: skip
    torch.testing.assert_close(out, ref)
    # the statistics are state: they survive state_dict
    state = g.state_dict()
    assert "bn__running_mean" in state and "bn__num_batches_tracked" in state
    g2 = ModulePrimary(_net(), (1, 6, 6), bn_stats=bn_stats, **kw).double()
    g2.load_state_dict(state)
    torch.testing.assert_close(g2.bn__running_var, g.bn__running_var)


def test_wrapping_changes_nothing_and_a_1x1_map_works():
    module = _net()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()
    g = ModulePrimary(module, (1, 1, 1))  # the last feature map is 1x1; batch-1 probe
    assert g.out_shape == (3,)
    assert module.training
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_per_condition_needs_ids_and_a_count():
    with pytest.raises(ValueError, match="n_conditions"):
        ModulePrimary(_net(), (1, 6, 6), bn_stats="per_condition")
    g = ModulePrimary(_net(), (1, 6, 6), bn_stats="per_condition", n_conditions=2).double()
    p = _params(g, 2)
    x = torch.randn(2, 3, 1, 6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="condition_ids: bn_stats='per_condition' needs"):
        g(x, p)
    with pytest.raises(ValueError, match=r"condition_ids: expected ids in 0..1"):
        g(x, p, condition_ids=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="bn_stats"):
        ModulePrimary(_net(), (1, 6, 6), bn_stats="per_task")  # type: ignore[arg-type]


def test_partial_generation_shares_the_rest_and_freezes_on_request():
    module = _net()
    g = ModulePrimary(module, (1, 6, 6), generate=["fc.*", "ln.*"], freeze=["conv.*"]).double()
    assert g.layout.names == ("fc.weight", "fc.bias", "ln.weight", "ln.bias")
    counts = g.counts()
    assert counts["generated"] == 4 * 3 + 3 + 3 + 3
    assert counts["shared_frozen"] == 4 * 9 + 4
    assert counts["shared_trainable"] == 4 + 4 + 4 + 4  # bn and gn scales and shifts
    assert not module.conv.weight.requires_grad and module.bn.weight.requires_grad
    params = _params(g, 3)
    x = torch.randn(3, 4, 1, 6, 6, dtype=torch.float64)
    g.eval()
    out = g(x, params)
    shared = {n: p for n, p in module.named_parameters() if not n.startswith(("fc", "ln"))}
    ref, _ = _loop(module, params, x, train=False, shared=shared)
    torch.testing.assert_close(out, ref)
    # gradients reach the shared trainable parameters, once for all weight sets
    out.sum().backward()
    assert module.bn.weight.grad is not None and module.conv.weight.grad is None
    hm = HyperModel(ModulePrimary(_net().float(), (1, 6, 6), generate=["fc.*"]), 5, [8])
    names = {n for n, _ in hm.named_parameters()}
    assert "f.target.shared.bn__weight" in names  # trained with the hypernetwork's optimizer


def test_a_pattern_that_matches_nothing_is_named():
    with pytest.raises(ValueError, match=r"generate: the pattern 'head\.\*' matches no"):
        ModulePrimary(_net(), (1, 6, 6), generate=["head.*"])
    with pytest.raises(ValueError, match=r"freeze: the pattern 'fc\.\*' matches no"):
        ModulePrimary(_net(), (1, 6, 6), generate=["fc.*"], freeze=["fc.*"])


def test_siren_init_is_the_generated_weights_target():
    torch.manual_seed(0)
    net = siren_init_(nn.Sequential(nn.Linear(2, 64), Sine(30.0), nn.Linear(64, 64), Sine(30.0),
                                    nn.Linear(64, 1)), omega0=30.0)  # fmt: skip
    assert float(net[0].weight.abs().max()) <= 1 / 2
    bound = (6 / 64) ** 0.5 / 30
    assert float(net[2].weight.abs().max()) <= bound
    g = ModulePrimary(net, (2,))
    spec = g.layout["2.weight"]
    assert spec.std == pytest.approx(bound / 3**0.5, rel=0.1)
    theta = HyperNetwork(g, 4, [32])(torch.randn(64, 4))
    assert float(theta["2.weight"].std()) == pytest.approx(spec.std, rel=0.25)


def test_bfloat16_autocast_runs_convolutions_and_batchnorm():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 3))  # fmt: skip
    h = HyperModel(ModulePrimary(net, (1, 6, 6)), 5, [16])
    x, c = torch.randn(4, 1, 6, 6), torch.randn(4, 5)
    ref = h(x, c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = h(x, c)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
    out.float().sum().backward()
    assert all(p.grad is not None for p in h.f.parameters())
    assert h.g.get_buffer("1__running_mean").dtype == torch.float32
