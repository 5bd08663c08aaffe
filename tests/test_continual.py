"""hyperlab.continual: the batched output regulariser against a per-task loop, the look-ahead
against the optimizer's own step, forgetting with and without it, exact resume, CL3."""

from __future__ import annotations

import math

import pytest
import torch

from hyperlab.continual import (
    EWC,
    ContinualConfig,
    FineTune,
    Hypernet,
    TaskConditioned,
    evaluate_tasks,
    fit_tasks,
    infer_task,
    lookahead,
    output_regularizer,
    output_regularizer_loop,
)
from hyperlab.io import CheckpointError
from hyperlab.primary import MLP


def _model(n_tasks=4, chunk_size: int | None = 50, dtype=torch.float32, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    target = MLP([2, 8, 2 * n_tasks], "relu")
    m = TaskConditioned(target, n_tasks, embedding_dim=6, hidden=(5, 5), chunk_size=chunk_size,
                        chunk_embedding_dim=3, generator=g, **kw)  # fmt: skip
    return m.to(dtype)


def _blob_tasks(n_tasks: int, n: int = 200, *, separated: bool, seed: int = 0):
    """Two-class tasks in 2-d. separated: task t lives around its own centre (its task is
    readable from x); else every task shares the inputs and labels x by a different line."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        x = torch.randn(n, 2, generator=g)
        angle = math.pi * t / n_tasks
        w = torch.tensor([math.cos(angle), math.sin(angle)])
        y = (x @ w > 0).long()
        if separated:
            x = x * 0.5 + 6.0 * torch.tensor([math.cos(2 * angle), math.sin(2 * angle)])
        tasks.append({"x": x, "y": y})
    return tasks


@pytest.mark.parametrize("chunk_size, init", [(50, "authors"), (48, "authors"),
                                              (50, "hyperfan"), (None, "authors")])  # fmt: skip
def test_regularizer_matches_per_task_loop_value_and_gradient(chunk_size, init, monkeypatch):
    import hyperlab.hypernet

    monkeypatch.setattr(hyperlab.hypernet, "_BLOCK_FLOATS", 40)  # several column blocks
    m = _model(chunk_size=chunk_size, dtype=torch.float64, init=init)
    tasks = [0, 1, 2]
    with torch.no_grad():
        targets = m.hnet.flat(m.embedding(tasks))
        targets = targets + 0.1 * torch.randn(targets.shape, dtype=torch.float64)
    delta = {k: 1e-2 * torch.randn_like(p) for k, p in m.hnet.named_parameters()}
    for d in (None, delta):
        a = output_regularizer(m, targets, tasks, d)
        ga = torch.autograd.grad(a, list(m.hnet.parameters()))
        b = output_regularizer_loop(m, targets, tasks, d)
        gb = torch.autograd.grad(b, list(m.hnet.parameters()))
        assert a > 0
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        for x, y in zip(ga, gb, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    # the earlier embeddings are held fixed: no gradient reaches them
    a = output_regularizer(m, targets, tasks)
    assert torch.autograd.grad(a, list(m.embeddings), allow_unused=True) == (None,) * 4


def test_regularizer_is_zero_right_after_the_snapshot():
    m = _model()
    learner = Hypernet(m, 2, ContinualConfig())
    learner.start_task(3, {})
    assert learner.targets is not None and learner.targets.shape == (3, m.target.layout.numel)
    assert float(output_regularizer(m, learner.targets, range(3)).detach()) == 0.0
    zero = {k: torch.zeros_like(p) for k, p in m.hnet.named_parameters()}
    assert float(output_regularizer(m, learner.targets, range(3), zero).detach()) == 0.0


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.Adam(ps, lr=1e-2),
    lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9),
    lambda ps: torch.optim.SGD(ps, lr=1e-2),
])  # fmt: skip
def test_lookahead_is_the_step_the_optimizer_takes(make):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    opt = make([w])
    for _ in range(3):  # the first step (no state) and later ones
        opt.zero_grad()
        (w.sin() * torch.randn(5, 3, dtype=torch.float64)).sum().backward()
        predicted = lookahead(opt)[w]
        before = w.detach().clone()
        opt.step()
        torch.testing.assert_close(w.detach() - before, predicted, rtol=1e-10, atol=1e-14)


def test_lookahead_refuses_an_optimizer_it_does_not_know():
    w = torch.nn.Parameter(torch.ones(2))
    w.grad = torch.ones(2)
    with pytest.raises(TypeError, match="optimizer"):
        lookahead(torch.optim.RMSprop([w]))


def _cfg(**kw):
    base = dict(iterations=150, batch_size=32, lr=1e-2, embedding_lr=1e-2, heads="single")
    return ContinualConfig(**{**base, **kw})


def test_forgetting_exists_without_the_regulariser_and_the_hypernet_prevents_it():
    tasks = _blob_tasks(2, separated=False)
    test = _blob_tasks(2, separated=False, seed=1)
    target = MLP([2, 16, 2], "relu")
    ft = fit_tasks(FineTune(target.bind(generator=torch.Generator().manual_seed(0)), 2, _cfg()),
                   tasks, test, infer=False)  # fmt: skip
    assert ft.accuracy[0][0] > 0.95  # task 0 was learned ...
    assert ft.accuracy[1][0] < 0.85  # ... and forgotten: the tasks' lines disagree
    g = torch.Generator().manual_seed(0)
    hn_model = TaskConditioned(target, 2, embedding_dim=4, hidden=(16,), chunk_size=20,
                               chunk_embedding_dim=4, generator=g)  # fmt: skip
    hn = fit_tasks(Hypernet(hn_model, 2, _cfg(beta=0.05)), tasks, test, infer=False)
    assert hn.accuracy[0][0] > 0.95 and hn.accuracy[1][1] > 0.9
    assert hn.accuracy[1][0] > 0.95
    # with beta = 0 the same hypernetwork forgets
    g0 = torch.Generator().manual_seed(0)
    hn_model0 = TaskConditioned(target, 2, embedding_dim=4, hidden=(16,), chunk_size=20,
                                chunk_embedding_dim=4, generator=g0)  # fmt: skip
    hn0 = fit_tasks(Hypernet(hn_model0, 2, _cfg(beta=0.0)), tasks, test, infer=False)
    assert hn0.accuracy[1][0] < hn.accuracy[1][0] - 0.05


def _block_tasks(n_tasks: int, n: int = 40, seed: int = 0):
    """Task t's inputs live in coordinates 2t, 2t+1 only: ±(1, -1) plus noise, label by sign."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        y = torch.randint(0, 2, (n,), generator=g)
        x = torch.zeros(n, 2 * n_tasks)
        sign = (1 - 2 * y).float()
        x[:, 2 * t] = sign + 0.1 * torch.randn(n, generator=g)
        x[:, 2 * t + 1] = -sign + 0.1 * torch.randn(n, generator=g)
        tasks.append({"x": x, "y": y})
    return tasks


def test_cl3_picks_the_confident_head_on_a_separable_toy():
    """A linear target whose head t reads only task t's coordinates (by hand): every other head
    sees zeros (uniform, maximal entropy), so entropy inference must pick the right task, and
    CL3 accuracy is CL1's; a class error stays an error in CL3."""
    n_tasks = 3
    tasks = _block_tasks(n_tasks)
    w = torch.zeros(2 * n_tasks, 2 * n_tasks)
    for t in range(n_tasks):
        w[2 * t, 2 * t], w[2 * t, 2 * t + 1] = 10.0, -10.0  # class 0: x_2t > x_2t+1
        w[2 * t + 1] = -w[2 * t]
    target = MLP([2 * n_tasks, 2 * n_tasks], "relu")
    bound = target.bind(target.layout.unflatten(torch.cat([w.flatten(), torch.zeros(6)])))
    learner = FineTune(bound, 2, _cfg(heads="multi"))
    for t in range(n_tasks):
        assert torch.equal(infer_task(learner, tasks[t]["x"], range(n_tasks)),
                           torch.full((40,), t))  # fmt: skip
    acc, acc_inf, ti = evaluate_tasks(learner, tasks, n_tasks - 1)
    assert acc == [1.0] * 3 and acc_inf == [1.0] * 3 and ti == [1.0] * 3
    wrong = [dict(tasks[0], y=1 - tasks[0]["y"]), *tasks[1:]]  # every class of task 0 wrong
    acc, acc_inf, ti = evaluate_tasks(learner, wrong, n_tasks - 1)
    assert acc[0] == 0.0 and acc_inf[0] == 0.0 and ti[0] == 1.0


def test_cl3_on_split_mnist_infers_tasks_above_chance(data_root):
    """HNET+ENT on three SplitMNIST tasks (small: 2,000 images a task, 100 steps): the task
    is inferred well above chance (1/3), and CL3 accuracy never exceeds CL1's."""
    from hyperlab.data import load_mnist
    from hyperlab.data.tasks import split_tasks

    x, y = load_mnist("train", data_root)
    xt, yt = load_mnist("test", data_root)
    train = [{k: v[:2000] for k, v in t.items()} for t in split_tasks(x, y, 3)]
    test = [{k: v[:500] for k, v in t.items()} for t in split_tasks(xt, yt, 3)]
    g = torch.Generator().manual_seed(0)
    m = TaskConditioned(MLP([784, 50, 6], "relu"), 3, embedding_dim=16, hidden=(10, 10),
                        chunk_size=4000, chunk_embedding_dim=16, generator=g)  # fmt: skip
    res = fit_tasks(Hypernet(m, 2, ContinualConfig(iterations=100)), train, test)
    assert min(res.final) > 0.9
    assert sum(res.task_inference[-1]) / 3 > 0.45
    assert all(i <= a for i, a in zip(res.final_inferred, res.final, strict=True))


def _tiny_run(learner_kind: str, path=None, stop_after=None, n_tasks=3):
    tasks = _blob_tasks(n_tasks, n=64, separated=True)
    test = _blob_tasks(n_tasks, n=64, separated=True, seed=1)
    cfg = _cfg(heads="multi", iterations=20, fisher_samples=30)
    torch.manual_seed(123)  # the learner's init comes from its own generator, not this
    g = torch.Generator().manual_seed(0)
    target = MLP([2, 8, 2 * n_tasks], "relu")
    if learner_kind == "hnet":
        learner = Hypernet(TaskConditioned(target, n_tasks, embedding_dim=4, hidden=(8,),
                                           chunk_size=16, chunk_embedding_dim=3, generator=g),
                           2, cfg)  # fmt: skip
    else:
        learner = EWC(target.bind(generator=g), 2, cfg)

    def stop(t, _res):
        if stop_after is not None and t == stop_after:
            raise KeyboardInterrupt

    return learner, fit_tasks(learner, tasks, test, checkpoint=path, on_task=stop)


@pytest.mark.parametrize("kind", ["hnet", "ewc"])
def test_resume_between_tasks_is_exact(tmp_path, kind):
    learner_full, full = _tiny_run(kind)
    ck = tmp_path / "cl.pt"
    with pytest.raises(KeyboardInterrupt):
        _tiny_run(kind, ck, stop_after=0)
    assert ck.exists()
    learner, resumed = _tiny_run(kind, ck)
    assert resumed.accuracy == full.accuracy
    assert resumed.train_loss == full.train_loss
    for (k, a), (_, b) in zip(learner.model.state_dict().items(),
                              learner_full.model.state_dict().items(), strict=True):  # fmt: skip
        assert torch.equal(a, b), k
    # a finished checkpoint resumes to the same record without training
    _, again = _tiny_run(kind, ck)
    assert again.accuracy == full.accuracy


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    ck = tmp_path / "cl.pt"
    _tiny_run("hnet", ck)
    with pytest.raises(CheckpointError, match="another learner"):
        _tiny_run("ewc", ck)


def test_ewc_fisher_matches_per_sample_loop():
    target = MLP([2, 5, 4], "tanh")
    bound = target.bind(generator=torch.Generator().manual_seed(0)).double()
    ewc = EWC(bound, 2, ContinualConfig())
    x = torch.randn(7, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (7,))
    fisher = ewc.fisher(1, x, y, chunk=3)
    ref = {k: torch.zeros_like(p) for k, p in bound.named_parameters()}
    for i in range(7):
        bound.zero_grad()
        logp = torch.log_softmax(bound(x[i : i + 1])[:, 2:4], -1)
        logp[0, y[i]].backward()
        for k, p in bound.named_parameters():
            ref[k] += p.grad**2 / 7
    for k in ref:
        torch.testing.assert_close(fisher[k], ref[k])


def test_evaluate_rows_and_the_during_and_final_views():
    tasks = _blob_tasks(2, n=50, separated=True)
    learner = FineTune(MLP([2, 4, 4], "relu").bind(), 2, _cfg(heads="multi", iterations=5))
    with pytest.raises(ValueError, match=r"target: expected 6 outputs"):
        fit_tasks(learner, tasks + tasks[:1], tasks + tasks[:1])
    res = fit_tasks(learner, tasks, tasks)
    assert [len(r) for r in res.accuracy] == [1, 2]
    assert res.during == [res.accuracy[0][0], res.accuracy[1][1]]
    assert res.final == res.accuracy[1]
    acc, acc_inf, ti = evaluate_tasks(learner, tasks, 1)
    assert acc == res.accuracy[1] and acc_inf == res.accuracy_inferred[1]
    assert all(a_inf <= a + 1e-12 or t < 1 for a, a_inf, t in zip(acc, acc_inf, ti, strict=True))


@pytest.mark.parametrize("kw, name", [
    (dict(iterations=0), "iterations"), (dict(lr=0.0), "lr"), (dict(beta=-1.0), "beta"),
    (dict(heads="both"), "heads"),
])  # fmt: skip
def test_bad_config_is_named(kw, name):
    with pytest.raises(ValueError, match=name):
        ContinualConfig(**kw)


def test_bad_tasks_are_named():
    learner = FineTune(MLP([2, 4, 2], "relu").bind(), 2, _cfg())
    good = _blob_tasks(1, n=10, separated=True)
    with pytest.raises(ValueError, match="train"):
        fit_tasks(learner, [], [])
    with pytest.raises(TypeError, match=r"test\[0\]"):
        fit_tasks(learner, good, [{"x": good[0]["x"]}])
    with pytest.raises(ValueError, match="one test set per task"):
        fit_tasks(learner, good, good + good)
    with pytest.raises(ValueError, match=r"train\[0\]\['y'\]: expected int64 labels"):
        fit_tasks(learner, [{"x": good[0]["x"], "y": good[0]["y"] + 2}], good)


def test_authors_init_xavier_and_normal_embeddings():
    m = _model(n_tasks=3, chunk_size=40)
    head = m.hnet.head
    assert float(head.out_scale.min()) == 1.0 == float(head.out_scale.max())
    assert float(head.b_out.detach().abs().max()) == 0.0
    first = torch.cat([head.w_features, head.w_chunk], 1)
    assert float(first.abs().max()) <= math.sqrt(6 / sum(first.shape))
    with pytest.raises(ValueError, match="init"):
        _model(init="nope")


def test_per_task_batchnorm_statistics_are_kept_apart():
    """A target with BatchNorm (ModulePrimary, bn_stats='per_condition'): training task 1
    leaves task 0's running statistics as task 0 left them, and each task is evaluated
    with its own."""
    from hyperlab.modules import ModulePrimary

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 4))  # fmt: skip
    target = ModulePrimary(net, (4,), bn_stats="per_condition", n_conditions=2)
    g = torch.Generator().manual_seed(0)
    m = TaskConditioned(target, 2, embedding_dim=4, hidden=(8,), chunk_size=30,
                        chunk_embedding_dim=3, generator=g)  # fmt: skip
    tasks = [{"x": torch.randn(64, 4) * (1 + 3 * t) + 2 * t, "y": torch.randint(0, 2, (64,))}
             for t in range(2)]  # fmt: skip
    rows = []

    def keep(t, r):
        rows.append(target.get_buffer("1__running_mean").clone())

    res = fit_tasks(Hypernet(m, 2, _cfg(heads="multi", iterations=10)), tasks, tasks,
                    on_task=keep)  # fmt: skip
    after0, after1 = rows
    assert not torch.equal(after0[0], torch.zeros(8))  # task 0 trained its row ...
    assert torch.equal(after1[0], after0[0])  # ... and task 1 did not touch it
    assert not torch.equal(after1[1], after0[1])
    assert len(res.accuracy[-1]) == 2
