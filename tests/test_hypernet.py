"""Hypernetworks, the embedding method and parameter counts (modularity paper, Sec. 5)."""

import pytest
import torch

from hyperlab.hypernet import EmbeddingModel, HyperModel, HyperNetwork, modularity_counts
from hyperlab.modules import ModulePrimary
from hyperlab.primary import MLP, ConvNet, count_parameters


@pytest.mark.parametrize("k", [2, 3, 5, 9])
def test_counts_equal_paper_formulas(k):
    """Sec. 5 (Fig. 1a sizes): built modules have exactly the paper's N_f, N_g, N_e, N_q."""
    d_x = d_i = 1000
    E = 10**4
    paper = {
        "N_g": 10**4 + 10,
        "N_q": 10**4 + 10 * E + 10,
        "N_f": 10**5 + 10**4 * (k - 2) + 10**2 * (10**4 + 10),
        "N_e": 10**5 + 10**4 * (k - 2) + 10**6,
    }
    assert modularity_counts(d_x, d_i, E, k) == paper
    g = MLP([d_x, 10, 1], bias=False)
    f = HyperNetwork(g, d_i, [100] * (k - 1), bias=False)
    emb = EmbeddingModel(d_x, d_i, E, [100] * (k - 1), [10], 1, bias=False)
    assert g.layout.numel == paper["N_g"]
    assert count_parameters(f) == paper["N_f"]
    assert count_parameters(emb.e) == paper["N_e"]
    assert count_parameters(emb.q) == paper["N_q"]


def test_hyperfan_in_gives_he_scale_generated_weights():
    torch.manual_seed(0)
    g = MLP([300, 50, 50, 12])
    f = HyperNetwork(g, 64, [128, 128])
    theta = f(torch.randn(512, 64))
    for spec in g.layout:
        t = theta[spec.name]
        if spec.role == "weight":
            var = t.pow(2).mean().item()
            assert 0.7 < var * spec.fan_in / 2.0 < 1.4, (spec.name, var * spec.fan_in)
        else:
            assert t.abs().max().item() == 0.0


def test_standard_init_ignores_the_primarys_fan_in():
    """Why hyperfan: with nn.Linear's default head init every generated layer gets the same
    variance, so layers with fan-in 1000 and 10 end up 100x apart relative to their targets."""
    torch.manual_seed(0)
    g = MLP([1000, 10, 10])
    ratios = {}
    for init in ("standard", "hyperfan"):
        theta = HyperNetwork(g, 64, [128], init=init)(torch.randn(256, 64))
        ratios[init] = [
            theta[n].pow(2).mean().item() * g.layout[n].fan_in / 2.0
            for n in ("fc0.weight", "fc1.weight")
        ]
    assert ratios["standard"][0] / ratios["standard"][1] > 30
    assert all(0.7 < r < 1.4 for r in ratios["hyperfan"])


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_first_layer_equals_materialised(parameterization, bias):
    torch.manual_seed(0)
    g = MLP([20, 8, 8, 3], bias=bias, parameterization=parameterization)
    h = HyperModel(g, 6, [16, 16], bias=bias, parameterization=parameterization).double()
    x, c = torch.randn(5, 7, 20, dtype=torch.float64), torch.randn(5, 7, 6, dtype=torch.float64)
    h.fused = True  # below FUSE_MIN_NUMEL the default would materialise
    fused = h(x, c)
    h.fused = False
    materialised = h(x, c)
    torch.testing.assert_close(fused, materialised, rtol=1e-10, atol=1e-12)
    params = [p for p in h.parameters() if p.requires_grad]
    grads = [torch.autograd.grad(out.square().sum(), params) for out in (fused, materialised)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_fuses_by_default_only_above_the_measured_size():
    calls = []
    for d in (20, 200):
        h = HyperModel(MLP([d, 10, 1]), 4, [8])
        h._forward_fused = lambda x, c, _d=d: calls.append(_d) or torch.zeros(x.shape[0], 1)
        h(torch.randn(3, d), torch.randn(3, 4))
    assert calls == [200]  # 20 x 10 = 200 < FUSE_MIN_NUMEL <= 200 x 10


def test_equals_vmap_functional_call_of_an_nn_module():
    """The same step written the way users would (per-sample weight dicts through
    vmap(functional_call) of an nn.Sequential) gives hyperlab's outputs and gradients."""
    from torch.func import functional_call, vmap

    torch.manual_seed(0)
    h = HyperModel(MLP([20, 8, 8, 3]), 6, [16, 16]).double()
    seq = torch.nn.Sequential(torch.nn.Linear(20, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8),
                              torch.nn.ReLU(), torch.nn.Linear(8, 3))  # fmt: skip
    names = {f"{2 * i}.{kind}": f"fc{i}.{kind}" for i in range(3) for kind in ("weight", "bias")}
    x, c = torch.randn(9, 20, dtype=torch.float64), torch.randn(9, 6, dtype=torch.float64)

    def by_vmap():
        theta = h.f(c)
        params = {k: theta[v] for k, v in names.items()}
        return vmap(lambda p, xi: functional_call(seq, p, (xi,)))(params, x)

    params = list(h.parameters())
    outs = [h(x, c), by_vmap()]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-12)
    grads = [torch.autograd.grad(o.square().sum(), params) for o in outs]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_full_head_blocks_hold_the_whole_matrix():
    """One parameter block per generated tensor; weight/bias stack them in layout order."""
    torch.manual_seed(0)
    g = MLP([5, 4, 2])
    f = HyperNetwork(g, 3, [6])
    assert f.head.blocks == [s.numel for s in g.layout]
    assert f.head.weight.shape == (g.layout.numel, 6) and f.head.bias.shape == (g.layout.numel,)
    e = torch.randn(2, 6)
    torch.testing.assert_close(f.head(e), e @ f.head.weight.T + f.head.bias)
    assert [p.shape for p in f.head.parameters()][:1] == [(20, 6)]


def test_groups_and_dedupe_share_one_weight_set_per_condition():
    torch.manual_seed(0)
    g = MLP([4, 8, 2])
    h = HyperModel(g, 3, [16])
    conds = torch.randn(3, 3)
    x = torch.randn(3, 10, 4)
    grouped = h(x, conds)  # (3, 10, 2): 10 inputs per condition
    per_sample = h(x.reshape(30, 4), conds.repeat_interleave(10, 0)).reshape(3, 10, 2)
    torch.testing.assert_close(grouped, per_sample, rtol=1e-5, atol=1e-6)
    dedup = h(x.reshape(30, 4), conds.repeat_interleave(10, 0), dedupe=True).reshape(3, 10, 2)
    torch.testing.assert_close(dedup, grouped, rtol=1e-5, atol=1e-6)


def test_chunked_head_generates_full_layout_with_few_parameters():
    torch.manual_seed(0)
    g = ConvNet()
    f = HyperNetwork(g, 32, [64], head="chunked", chunk_size=500, chunk_hidden=32)
    theta = f(torch.randn(4, 32))
    assert {k: tuple(v.shape[1:]) for k, v in theta.items()} == {s.name: s.shape for s in g.layout}
    assert count_parameters(f.head) < g.layout.numel
    w = theta["conv1.weight"]
    ratio = w.pow(2).mean().item() * g.layout["conv1.weight"].fan_in / 2.0
    assert 0.3 < ratio < 3.0
    out = HyperModel(g, 32, [64], head="chunked", chunk_size=500)(
        torch.randn(4, 1, 28, 28), torch.randn(4, 32)
    )
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_hypermodel_with_module_primary_trains():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    h = HyperModel(ModulePrimary(net, (2,)), 1, [32])
    cond = torch.rand(128, 1) * 4 - 2
    x = torch.randn(128, 2)
    y = (x[:, :1] * cond).sin()
    opt = torch.optim.Adam(h.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = (h(x, cond) - y).square().mean()
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_embedding_model_broadcasts_groups():
    torch.manual_seed(0)
    m = EmbeddingModel(4, 3, 5, [8], [6], 2)
    c, x = torch.randn(2, 3), torch.randn(2, 7, 4)
    out = m(x, c)
    ref = m(x.reshape(14, 4), c.repeat_interleave(7, 0)).reshape(2, 7, 2)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
@pytest.mark.parametrize("bias", [True, False])
def test_embedding_model_is_q_on_the_concatenation(parameterization, bias):
    """q(x, e(I)) runs its first layer per part (e(I)'s product once per condition, not per
    x of its group): the same values and gradients as q on the explicit [x; e(I)]."""
    torch.manual_seed(0)
    m = EmbeddingModel(4, 3, 5, [8], [6], 2, bias=bias, parameterization=parameterization)
    m = m.double()
    c, x = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 7, 4, dtype=torch.float64)
    out = m(x, c)
    emb = m.e(c).unsqueeze(1).expand(2, 7, 5)
    ref = m.q(torch.cat([x, emb], -1))
    torch.testing.assert_close(out, ref)
    params = list(m.parameters())
    g = torch.autograd.grad(out.square().sum(), params)
    g_ref = torch.autograd.grad(m.q(torch.cat([x, m.e(c).unsqueeze(1).expand(2, 7, 5)], -1))
                                .square().sum(), params)  # fmt: skip
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="parts: expected tensors whose last dims sum to 9"):
        m.q.primary.forward_concat([x, emb[..., :4]], m.q.params())
    with pytest.raises(ValueError, match="parts: expected leading dims that broadcast"):
        m.q.primary.forward_concat([x, emb[:, :3]], m.q.params())
    batched = {k: v.expand(2, *v.shape) for k, v in m.q.params().items()}
    with pytest.raises(ValueError, match="params: forward_concat takes one unbatched"):
        m.q.primary.forward_concat([x, emb], batched)


def test_model_bad_inputs():
    h = HyperModel(MLP([4, 3, 1]), 2, [5])
    with pytest.raises(ValueError, match=r"cond: expected shape \(\.\.\., 2\)"):
        h(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="x: leading dims"):
        h(torch.randn(4, 4), torch.randn(3, 2))
    with pytest.raises(ValueError, match="x: expected shape"):
        h(torch.randn(3, 5), torch.randn(3, 2))
    nan = torch.randn(3, 2)
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="cond: contains NaN"):
        h(torch.randn(3, 4), nan)
    with pytest.raises(ValueError, match="cond: contains NaN"):
        h.f.features(nan)  # the public entry points check; the inner trunk does not repeat it
    emb = EmbeddingModel(4, 2, 6, [5])
    with pytest.raises(ValueError, match="cond: contains NaN"):
        emb(torch.randn(3, 4), nan)
    with pytest.raises(ValueError, match="x: contains NaN"):
        emb(nan.repeat(1, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="head"):
        HyperNetwork(MLP([4, 1]), 2, [5], head="sparse")
    with pytest.raises(TypeError, match="target"):
        HyperNetwork(torch.nn.Linear(2, 2), 2)
    m = EmbeddingModel(4, 2, 3)
    with pytest.raises(ValueError, match="x: expected shape"):
        m(torch.randn(3, 5), torch.randn(3, 2))


def test_composes_with_torch_func():
    """functional_call/grad over a HyperModel, and vmap over a primary's inputs, just work."""
    torch.manual_seed(0)
    h = HyperModel(MLP([5, 4, 1]), 3, [8])
    params = {k: v.detach() for k, v in h.named_parameters()}
    x, c = torch.randn(6, 5), torch.randn(6, 3)

    def loss(p):
        return torch.func.functional_call(h, p, (x, c)).square().mean()

    grads = torch.func.grad(loss)(params)
    loss(dict(h.named_parameters())).backward()
    for name, p in h.named_parameters():
        torch.testing.assert_close(grads[name], p.grad)
    theta = h.weights(c[0])
    per_x = torch.func.vmap(lambda xi: h.g(xi, theta))(x)
    torch.testing.assert_close(per_x, h.g(x, theta))


@pytest.mark.parametrize("kind", ["mlp", "convnet", "module"])
def test_compiles_with_fullgraph_and_gives_the_eager_outputs(kind):
    """torch.compile(model, fullgraph=True): no graph break (the input checks step aside under
    compile), same outputs and gradients. aot_eager traces forward and backward as inductor
    would, without its C++ build time."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    if kind == "mlp":
        g, x = MLP([6, 8, 3]), torch.randn(5, 6)
    elif kind == "convnet":
        g = ConvNet(in_shape=(1, 8, 8), channels=(4,), hidden=(), out_features=3, kernel_size=3)
        x = torch.randn(5, 1, 8, 8)
    else:
        net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        g, x = ModulePrimary(net, (6,)), torch.randn(5, 6)
    model = HyperModel(g, 4, [16])
    cond = torch.randn(5, 4)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    eager_out, comp_out = model(x, cond), compiled(x, cond)
    torch.testing.assert_close(comp_out, eager_out)
    grads = [torch.autograd.grad(o.square().sum(), list(model.parameters()))
             for o in (eager_out, comp_out)]  # fmt: skip
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_full_head_loads_a_state_dict_with_the_whole_matrix():
    """Checkpoints written before the head was blocked (head.weight, head.bias) still load."""
    torch.manual_seed(0)
    f = HyperNetwork(MLP([5, 4, 2]), 3, [6])
    old = {k: v for k, v in f.state_dict().items() if not k.startswith("head.")}
    old["head.weight"], old["head.bias"] = f.head.weight + 1.0, f.head.bias - 1.0
    f2 = HyperNetwork(MLP([5, 4, 2]), 3, [6])
    f2.load_state_dict(old)
    torch.testing.assert_close(f2.head.weight, f.head.weight + 1.0)
    torch.testing.assert_close(f2.head.bias, f.head.bias - 1.0)


@pytest.mark.parametrize("entry", ["primary", "bound", "hyper", "hyper_fused", "f", "embedding"])
def test_a_float64_input_into_a_float32_model_is_a_named_error(entry):
    g = MLP([40, 30, 3])
    x = torch.randn(4, 40, dtype=torch.float64)
    cond = torch.randn(4, 6)
    if entry == "primary":
        call, arg = (lambda: g(x, g.init_params())), "x"
    elif entry == "bound":
        call, arg = (lambda: g.bind()(x)), "x"
    elif entry in ("hyper", "hyper_fused"):
        h = HyperModel(g, 6, [8])
        h.fused = entry == "hyper_fused"
        call, arg = (lambda: h(x, cond)), "x"
        with pytest.raises(TypeError, match="cond: dtype float64 differs"):
            h(x.float(), cond.double())
    elif entry == "f":
        f = HyperNetwork(g, 6, [8])
        call, arg = (lambda: f(cond.double())), "cond"
    else:
        e = EmbeddingModel(40, 6, 5)
        call, arg = (lambda: e(x, cond)), "x"
    with pytest.raises(TypeError, match=rf"{arg}: dtype float64 differs from the model's "
                                        rf"parameters \(float32\); convert"):  # fmt: skip
        call()


def test_float64_models_take_float64_inputs_and_autocast_mixes_freely():
    g = MLP([5, 4, 2]).double()
    h = HyperModel(MLP([5, 4, 2]), 3, [6]).double()
    x, cond = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    assert g(x, g.init_params(dtype=torch.float64)).dtype == torch.float64
    assert h(x, cond).dtype == torch.float64
    h32 = HyperModel(MLP([5, 4, 2]), 3, [6])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = h32(x.float().bfloat16(), cond.float())
    assert out.dtype == torch.bfloat16


def test_a_full_head_too_large_is_refused_naming_the_alternatives():
    g = MLP([100, 100, 10])  # 11,110 weights
    with pytest.raises(ValueError, match=r"head: a full head .* use head='chunked'"):
        HyperNetwork(g, 4, [64], max_head_params=64 * 11_000)
    HyperNetwork(g, 4, [64], head="chunked", max_head_params=64 * 11_000)  # chunked: fine
