"""Tests for hyperlab.train: convergence, exact resume, crash-safe checkpoints, input errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from hyperlab import io as hio
from hyperlab.io import CheckpointError, safe_torch_load
from hyperlab.train import (
    CheckpointMismatchError,
    History,
    TrainConfig,
    TrainingDiverged,
    fit,
)


class Net(nn.Module):
    """Tiny MLP with dropout, so the global torch RNG matters for exact resume."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(3, 16)
        self.drop = nn.Dropout(0.2)
        self.l2 = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(self.drop(torch.tanh(self.l1(x)))).squeeze(-1)


def new_model(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def make_data(n: int = 90) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g)
    return {"x": x, "y": torch.sin(x).sum(1), "idx": torch.arange(n)}


def mse(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return ((model(batch["x"]) - batch["y"]) ** 2).mean()


def jitter(batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    noise = torch.randn(batch["x"].shape, generator=gen).to(batch["x"].device)  # CPU generator
    return {**batch, "x": batch["x"] + 0.05 * noise}


def make_evaluate(data: dict[str, torch.Tensor]):
    def evaluate(model: nn.Module) -> dict[str, float]:
        # torch.rand draws from the global RNG: resume must restore it exactly.
        return {"val": mse(model, data).item(), "noise": torch.rand(()).item()}

    return evaluate


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=4, batch_size=16, lr=0.05, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs"


def without_seconds(h: History) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in h.records]


class Interrupt(Exception):
    """Stands in for a crash (SIGKILL, preemption) in the middle of a run."""


def crash_at(epoch: int, evaluate):
    calls = {"n": 0}

    def wrapped(model):
        calls["n"] += 1
        if calls["n"] == epoch:
            raise Interrupt(f"crash during epoch {epoch}")
        return evaluate(model)

    return wrapped


# --- convergence -----------------------------------------------------------------------------


def linear_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 4, generator=g)
    w = torch.tensor([1.5, -2.0, 0.5, 3.0])
    y = x @ w + 0.7 + 0.05 * torch.randn(512, generator=g)

    def loss_fn(model, batch):
        return ((model(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()

    return {"x": x, "y": y}, w, loss_fn


@pytest.mark.parametrize(
    "kw",
    [
        dict(optimizer="sgd", lr=0.05),
        dict(optimizer="sgd", lr=0.02, momentum=0.9),
        dict(optimizer="adam", lr=0.1, lr_decay=0.99),
    ],
    ids=["sgd", "sgd-momentum", "adam"],
)
def test_linear_regression_converges(kw) -> None:
    data, w, loss_fn = linear_problem()
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    hist = fit(model, loss_fn, data, cfg(epochs=15, batch_size=32, **kw))
    losses = hist.series("train_loss")
    assert losses[0] > 1.0  # starts far from the optimum (noise floor is 0.0025)
    assert losses[-1] < 0.005
    assert torch.allclose(model.weight.detach().squeeze(0), w, atol=0.03)
    assert abs(model.bias.item() - 0.7) < 0.03
    assert [r["epoch"] for r in hist.records] == list(range(1, 16))


def test_lr_decay_is_per_step(tmp_path: Path) -> None:
    data = make_data(40)  # 3 steps per epoch with batch_size 16
    fit(new_model(), mse, data, cfg(epochs=2, lr=0.1, lr_decay=0.5), checkpoint_dir=tmp_path)
    state = safe_torch_load(tmp_path / "last.pt")
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.1 * 0.5**6)


def test_every_sample_once_per_epoch_and_seeded_order() -> None:
    data = make_data(50)

    def run(seed: int) -> list[list[int]]:
        seen: list[int] = []

        def loss_fn(model, batch):
            assert model.training
            seen.extend(batch["idx"].tolist())
            return mse(model, batch)

        fit(new_model(), loss_fn, data, cfg(epochs=3, batch_size=16, seed=seed))
        return [seen[i * 50 : (i + 1) * 50] for i in range(3)]

    a, b, c = run(0), run(0), run(1)
    for epoch in a:
        assert sorted(epoch) == list(range(50))
    assert a[0] != a[1]  # a fresh permutation each epoch
    assert a == b  # deterministic in the seed
    assert a != c


def test_eval_mode_around_evaluate_and_transform_generator() -> None:
    data = make_data(32)
    modes: list[str] = []

    def loss_fn(model, batch):
        modes.append("train" if model.training else "eval")
        assert "jittered" in batch
        return mse(model, batch)

    def evaluate(model):
        modes.append("train" if model.training else "eval")
        assert not torch.is_grad_enabled()
        return {"val": 1}

    def transform(batch, gen):
        assert isinstance(gen, torch.Generator)
        return {**jitter(batch, gen), "jittered": torch.ones(1)}

    model = new_model()
    hist = fit(model, loss_fn, data, cfg(epochs=2), evaluate=evaluate, transform=transform)
    assert modes == ["train", "train", "eval"] * 2
    assert model.training
    rec = hist.last()
    assert list(rec) == ["epoch", "train_loss", "seconds", "val"]
    assert rec["val"] == 1.0 and isinstance(rec["val"], float) and rec["seconds"] > 0


def test_progress_bar_counts_every_step_and_shows_the_loss(monkeypatch) -> None:
    import io

    import hyperlab.train.loop as train_module

    bars: list = []
    stream = io.StringIO()

    class Bar(train_module.tqdm):  # the real bar, forced on and written to a buffer
        def __init__(self, *args, **kw):
            if kw.get("disable") is None:  # on unless fit turned it off (not a terminal here)
                kw["disable"] = False
            kw.update(file=stream, mininterval=0)
            super().__init__(*args, **kw)
            bars.append(self)

    monkeypatch.setattr(train_module, "tqdm", Bar)
    hist = fit(new_model(), mse, make_data(32), cfg(epochs=2, progress=True, desc="demo"))
    (bar,) = bars
    assert bar.total == 2 * 2 and bar.n == 4  # 2 epochs of ceil(32 / 16) steps
    text = stream.getvalue()
    assert "demo" in text and "epoch=2" in text
    assert f"loss={hist.last()['train_loss']:.4g}" in text
    bars.clear()
    fit(new_model(), mse, make_data(32), cfg(epochs=1, progress=False))
    assert bars[0].disable  # progress=False: no bar


def test_history_helpers() -> None:
    h = History([{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0, "acc": 0.5}])
    assert h.series("train_loss") == [2.0, 1.0]
    assert h.last() == {"epoch": 2, "train_loss": 1.0, "acc": 0.5}
    assert History.from_dict(h.to_dict()) == h and len(h) == 2
    with pytest.raises(KeyError, match="acc"):
        h.series("acc")
    with pytest.raises(IndexError):
        History().last()


# --- exact resume ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [dict(optimizer="sgd", momentum=0.9, lr_decay=0.97), dict(optimizer="adam", lr=0.01)],
    ids=["sgd", "adam"],
)
def test_resume_after_crash_is_bit_identical(tmp_path: Path, kw) -> None:
    data = make_data()
    evaluate = make_evaluate(data)
    config = cfg(epochs=5, **kw)
    ref_model = new_model()
    ref = fit(ref_model, mse, data, config, evaluate=evaluate, transform=jitter)

    # Crash while evaluating epoch 4: the checkpoint of epoch 3 survives, epoch 4 is redone.
    with pytest.raises(Interrupt):
        fit(
            new_model(),
            mse,
            data,
            config,
            evaluate=crash_at(4, evaluate),
            transform=jitter,
            checkpoint_dir=tmp_path,
        )
    assert safe_torch_load(tmp_path / "last.pt")["epoch"] == 3

    resumed_model = new_model(seed=123)  # a fresh instance, even with other initial weights
    resumed = fit(
        resumed_model,
        mse,
        data,
        config,
        evaluate=evaluate,
        transform=jitter,
        checkpoint_dir=tmp_path,
    )
    assert_same_params(params(resumed_model), params(ref_model))
    assert without_seconds(resumed) == without_seconds(ref)
    assert len(resumed) == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("data_on_gpu", [False, True])
def test_cuda_resume_is_bit_identical(tmp_path: Path, data_on_gpu: bool) -> None:
    data = make_data()
    if data_on_gpu:
        data = {k: v.cuda() for k, v in data.items()}
    config = cfg(epochs=4, optimizer="adam", lr=0.01)
    ref_model = new_model()
    ref = fit(ref_model, mse, data, config, transform=jitter, device="cuda")
    assert next(ref_model.parameters()).is_cuda
    fit(new_model(), mse, data, config, transform=jitter, device="cuda",
        checkpoint_dir=tmp_path, stop_after_epochs=2)  # fmt: skip
    model = new_model(seed=5)
    hist = fit(model, mse, data, config, transform=jitter, device="cuda", checkpoint_dir=tmp_path)
    assert_same_params(params(model), params(ref_model))
    assert without_seconds(hist) == without_seconds(ref)


def test_stop_after_epochs_and_sparse_checkpoints(tmp_path: Path) -> None:
    data = make_data()
    evaluate = make_evaluate(data)
    config = cfg(epochs=6, checkpoint_every=4, optimizer="adam", lr=0.01)
    ref_model = new_model()
    ref = fit(ref_model, mse, data, config, evaluate=evaluate, transform=jitter)

    part = fit(
        new_model(),
        mse,
        data,
        config,
        evaluate=evaluate,
        transform=jitter,
        checkpoint_dir=tmp_path,
        stop_after_epochs=2,
    )
    assert len(part) == 2 and safe_torch_load(tmp_path / "last.pt")["epoch"] == 2

    # Crash during epoch 5: no checkpoint at 3 (checkpoint_every=4), so 4 is the resume point.
    with pytest.raises(Interrupt):
        fit(
            new_model(),
            mse,
            data,
            config,
            evaluate=crash_at(3, evaluate),  # third epoch of this call = epoch 5
            transform=jitter,
            checkpoint_dir=tmp_path,
        )
    assert safe_torch_load(tmp_path / "last.pt")["epoch"] == 4

    model = new_model(seed=7)
    done = fit(
        model, mse, data, config, evaluate=evaluate, transform=jitter, checkpoint_dir=tmp_path
    )
    assert_same_params(params(model), params(ref_model))
    assert without_seconds(done) == without_seconds(ref)


def test_extend_epochs_and_finished_run_is_a_no_op(tmp_path: Path) -> None:
    data = make_data()
    ref_model = new_model()
    ref = fit(ref_model, mse, data, cfg(epochs=4), transform=jitter)

    fit(new_model(), mse, data, cfg(epochs=2), transform=jitter, checkpoint_dir=tmp_path)
    model = new_model()
    # desc/progress/checkpoint_every may change; epochs may grow.
    longer = cfg(epochs=4, desc="more", checkpoint_every=3)
    hist = fit(model, mse, data, longer, transform=jitter, checkpoint_dir=tmp_path)
    assert_same_params(params(model), params(ref_model))
    assert without_seconds(hist) == without_seconds(ref)

    calls = []

    def counting_loss(m, b):
        calls.append(1)
        return mse(m, b)

    again = new_model(seed=99)
    hist2 = fit(again, counting_loss, data, longer, transform=jitter, checkpoint_dir=tmp_path)
    assert calls == [] and hist2.records == hist.records
    assert_same_params(params(again), params(ref_model))

    with pytest.raises(CheckpointMismatchError, match="epoch 4 .*epochs=3"):
        fit(new_model(), mse, data, cfg(epochs=3), transform=jitter, checkpoint_dir=tmp_path)


def test_resume_false_starts_over(tmp_path: Path) -> None:
    data = make_data()
    fit(new_model(), mse, data, cfg(epochs=2, lr=0.2), checkpoint_dir=tmp_path)
    ref_model = new_model()
    fit(ref_model, mse, data, cfg(epochs=2))
    model = new_model()
    hist = fit(model, mse, data, cfg(epochs=2), checkpoint_dir=tmp_path, resume=False)
    assert len(hist) == 2
    assert_same_params(params(model), params(ref_model))
    assert safe_torch_load(tmp_path / "last.pt")["config"]["lr"] == 0.05  # overwritten


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (dict(lr=0.01), "lr"),
        (dict(seed=3), "seed"),
        (dict(batch_size=8), "batch_size"),
        (dict(optimizer="adam"), "optimizer"),
        (dict(lr_decay=0.9), "lr_decay"),
    ],
)
def test_config_mismatch_names_the_field(tmp_path: Path, change, field) -> None:
    data = make_data()
    fit(new_model(), mse, data, cfg(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match=rf"{field}=.*resume=False"):
        fit(new_model(), mse, data, cfg(epochs=2, **change), checkpoint_dir=tmp_path)


def test_data_and_model_mismatch(tmp_path: Path) -> None:
    fit(new_model(), mse, make_data(90), cfg(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="90 samples, now .* 80 samples"):
        fit(new_model(), mse, make_data(80), cfg(epochs=2), checkpoint_dir=tmp_path)

    def loss_fn(model, batch):
        return ((model(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()

    with pytest.raises(CheckpointMismatchError, match="do not fit this model"):
        fit(nn.Linear(3, 1), loss_fn, make_data(90), cfg(epochs=2), checkpoint_dir=tmp_path)


# --- crash-safe checkpoints --------------------------------------------------------------------


@pytest.mark.parametrize("where", ["torch.save", "os.replace"])
def test_crash_while_writing_checkpoint_keeps_previous(tmp_path: Path, monkeypatch, where) -> None:
    data = make_data()
    config = cfg(epochs=4)
    ref_model = new_model()
    fit(ref_model, mse, data, config, transform=jitter)

    fit(
        new_model(),
        mse,
        data,
        config,
        transform=jitter,
        checkpoint_dir=tmp_path,
        stop_after_epochs=2,
    )
    before = (tmp_path / "last.pt").read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    def broken_replace(src, dst):
        raise OSError("rename failed")

    if where == "torch.save":
        monkeypatch.setattr(torch, "save", broken_save)
    else:
        monkeypatch.setattr(hio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space|rename failed"):
        fit(new_model(), mse, data, config, transform=jitter, checkpoint_dir=tmp_path)
    monkeypatch.undo()

    # no stray temp files: the checkpoint and the per-epoch log only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "last.pt"]
    assert (tmp_path / "last.pt").read_bytes() == before
    assert safe_torch_load(tmp_path / "last.pt")["epoch"] == 2

    model = new_model()
    fit(model, mse, data, config, transform=jitter, checkpoint_dir=tmp_path)
    assert_same_params(params(model), params(ref_model))


@pytest.mark.parametrize("content", ["garbage", "truncated", "foreign"])
def test_corrupt_checkpoint_raises_checkpoint_error(tmp_path: Path, content) -> None:
    data = make_data()
    path = tmp_path / "last.pt"
    fit(new_model(), mse, data, cfg(epochs=1), checkpoint_dir=tmp_path)
    if content == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif content == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        torch.save(new_model().state_dict(), path)  # a valid file, but not a training checkpoint
    with pytest.raises(CheckpointError, match=str(path)):
        fit(new_model(), mse, data, cfg(epochs=2), checkpoint_dir=tmp_path)


def test_unwritable_checkpoint_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(hio.OutputDirError, match="checkpoint_dir"):
        fit(new_model(), mse, make_data(), cfg(epochs=1), checkpoint_dir=tmp_path / "file" / "ck")


# --- input validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(epochs=0), "epochs"),
        (dict(epochs=2.0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=-4), "batch_size"),
        (dict(lr=0.0), "lr"),
        (dict(lr=-0.1), "lr"),
        (dict(lr=math.nan), "lr"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(optimizer="adam", momentum=0.9), "momentum"),
        (dict(momentum=-0.1), "momentum"),
        (dict(lr_decay=0.0), "lr_decay"),
        (dict(checkpoint_every=0), "checkpoint_every"),
    ],
)
def test_bad_config(kw, match) -> None:
    with pytest.raises(ValueError, match=rf"TrainConfig\.{match}"):
        cfg(**kw)


def test_config_mutated_after_construction_is_rechecked() -> None:
    config = cfg()
    config.batch_size = 0
    with pytest.raises(ValueError, match="batch_size"):
        fit(new_model(), mse, make_data(), config)


@pytest.mark.parametrize(
    ("data", "exc", "match"),
    [
        ({}, ValueError, "non-empty"),
        ({"x": torch.zeros(0, 3), "y": torch.zeros(0)}, ValueError, "0 samples"),
        ({"x": torch.zeros(5, 3), "y": torch.zeros(4)}, ValueError, r"data\['y'\] has 4"),
        ({"x": torch.zeros(5, 3), "y": [0.0] * 5}, TypeError, r"data\['y'\]"),
        ({"x": torch.zeros(5, 3), "y": torch.tensor(1.0)}, ValueError, "0-d"),
    ],
)
def test_bad_data(data, exc, match) -> None:
    with pytest.raises(exc, match=match):
        fit(new_model(), mse, data, cfg())


def test_bad_callables_and_outputs() -> None:
    data = make_data(32)
    with pytest.raises(TypeError, match="loss_fn must return a scalar"):
        fit(new_model(), lambda m, b: (m(b["x"]) - b["y"]) ** 2, data, cfg())
    with pytest.raises(TypeError, match="evaluate must return a dict"):
        fit(new_model(), mse, data, cfg(), evaluate=lambda m: 0.5)
    with pytest.raises(ValueError, match="train_loss"):
        fit(new_model(), mse, data, cfg(), evaluate=lambda m: {"train_loss": 0.5})
    with pytest.raises(TypeError, match="transform must return a dict"):
        fit(new_model(), mse, data, cfg(), transform=lambda b, g: b["x"])
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        fit(new_model(), mse, data, {"epochs": 1})
    with pytest.raises(ValueError, match="stop_after_epochs"):
        fit(new_model(), mse, data, cfg(), stop_after_epochs=0)


def test_nan_loss_raises_training_diverged() -> None:
    data = make_data(48)  # 3 steps per epoch
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        loss = mse(model, batch)
        return loss * math.nan if calls["n"] == 5 else loss

    model = new_model()
    with pytest.raises(TrainingDiverged, match=r"nan at epoch 2, step 2") as info:
        fit(model, loss_fn, data, cfg(epochs=3))
    assert (info.value.epoch, info.value.step) == (2, 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())

    with pytest.raises(TrainingDiverged, match="epoch 1, step 2"):
        fit(new_model(), mse, data, cfg(lr=1e30))  # blows up, then the next loss is inf/nan
    # (lr=1e30 overflows on the first update; the check fires on the next step's loss)


# --- distributed -------------------------------------------------------------------------------


def _ddp_worker(rank: int, world: int, tmp: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    try:
        data = make_data(51)  # 25 per rank, one sample of each permutation skipped
        evaluate = make_evaluate(data)
        seen: list[list[int]] = []

        def loss_fn(model, batch):
            assert isinstance(model, nn.parallel.DistributedDataParallel)
            seen.append(batch["idx"].tolist())
            return mse(model, batch)

        config = cfg(epochs=3, batch_size=8, optimizer="adam", lr=0.01)
        ref_model = new_model()
        ref = fit(ref_model, loss_fn, data, config, evaluate=evaluate, transform=jitter,
                  checkpoint_dir=f"{tmp}/a")  # fmt: skip
        fit(new_model(), mse, data, config, evaluate=evaluate, transform=jitter,
            checkpoint_dir=f"{tmp}/b", stop_after_epochs=1)  # fmt: skip
        resumed_model = new_model(seed=rank + 10)
        resumed = fit(resumed_model, mse, data, config, evaluate=evaluate, transform=jitter,
                      checkpoint_dir=f"{tmp}/b")  # fmt: skip
        torch.save(
            {
                "ref": params(ref_model),
                "resumed": params(resumed_model),
                "ref_hist": without_seconds(ref),
                "resumed_hist": without_seconds(resumed),
                "seen": seen,
            },
            f"{tmp}/rank{rank}.pt",
        )
        dist.barrier()  # neither rank tears gloo down while the other is still in a collective
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_gloo_two_ranks(tmp_path: Path) -> None:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert_same_params(r0["ref"], r1["ref"])  # DDP keeps ranks in sync
    assert_same_params(r0["resumed"], r0["ref"])  # resume is exact under DDP too
    assert_same_params(r1["resumed"], r1["ref"])
    assert r0["resumed_hist"] == r0["ref_hist"]  # the checkpoint holds rank 0's history

    def common(hist):  # "noise" comes from each rank's own global RNG stream
        return [{k: v for k, v in r.items() if k != "noise"} for r in hist]

    assert common(r0["ref_hist"]) == common(r1["ref_hist"]) == common(r1["resumed_hist"])
    steps = 4  # ceil(25 / 8)
    for epoch in range(3):
        a = sum(r0["seen"][epoch * steps : (epoch + 1) * steps], [])
        b = sum(r1["seen"][epoch * steps : (epoch + 1) * steps], [])
        assert len(a) == len(b) == 25 and not set(a) & set(b)  # disjoint equal shards
    assert sorted(os.listdir(tmp_path / "a")) == ["history.csv", "last.pt"]


def test_every_epoch_is_logged_to_a_csv_beside_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = {"x": torch.randn(20, 3), "y": torch.randn(20, 1)}

    def loss(m, b):
        return torch.nn.functional.mse_loss(m(b["x"]), b["y"])

    cfg = TrainConfig(epochs=3, batch_size=5, lr=0.1, progress=False)
    hist = fit(model, loss, data, cfg, checkpoint_dir=tmp_path,
               evaluate=lambda m: {"w_norm": m.weight.norm()})  # fmt: skip
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,seconds,w_norm"
    assert len(lines) == 4
    assert [float(v) for v in lines[-1].split(",")[:2]] == [3.0, hist.last()["train_loss"]]


# --- precision, clipping, accumulation, read-backs -------------------------------------------


def test_accumulating_two_half_batches_equals_one_full_batch() -> None:
    data = make_data(64)
    drop_free = lambda: nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))  # noqa: E731

    def loss(m, b):
        return ((m(b["x"]).squeeze(-1) - b["y"]) ** 2).mean()

    torch.manual_seed(0)
    a = drop_free()
    b = drop_free()
    b.load_state_dict(a.state_dict())
    fit(a, loss, data, cfg(epochs=2, batch_size=16, lr_decay=0.9))
    fit(b, loss, data, cfg(epochs=2, batch_size=8, accumulate=2, lr_decay=0.9))
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name
    c = drop_free()
    c.load_state_dict(b.state_dict())
    fit(c, loss, data, cfg(epochs=1, batch_size=8))  # without accumulation: other updates
    assert not torch.allclose(next(c.parameters()), next(b.parameters()), atol=1e-4)


def test_grad_clip_bounds_every_update() -> None:
    data = make_data(16)
    model = nn.Linear(3, 1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])

    def loss(m, b):
        return 1e3 * ((m(b["x"]).squeeze(-1) - b["y"]) ** 2).mean()

    fit(model, loss, data, cfg(epochs=1, batch_size=16, lr=1.0, grad_clip=1e-3))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < float((after - before).norm()) <= 1e-3 + 1e-7
    with pytest.raises(ValueError, match="grad_clip must be a positive"):
        cfg(grad_clip=0.0)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes_exactly(tmp_path: Path, precision: str) -> None:
    data = make_data()
    config = cfg(epochs=4, precision=precision, optimizer="adam", lr=0.01)
    seen: list[torch.dtype] = []

    def loss(model, batch):
        out = model(batch["x"])
        seen.append(model.l1(batch["x"]).dtype)  # inside autocast: the low-precision dtype
        return ((out.float() - batch["y"]) ** 2).mean()

    ref_model = new_model()
    ref = fit(ref_model, loss, data, config, transform=jitter)
    assert seen[0] == (torch.bfloat16 if precision == "bf16" else torch.float16)
    assert all(p.dtype == torch.float32 for p in ref_model.parameters())  # fp32 master weights
    assert ref.series("train_loss")[-1] < ref.series("train_loss")[0]
    fit(new_model(), loss, data, config, transform=jitter, checkpoint_dir=tmp_path,
        stop_after_epochs=2)  # fmt: skip
    if precision == "fp16":
        assert "scaler" in safe_torch_load(tmp_path / "last.pt")
    resumed = new_model(seed=5)
    fit(resumed, loss, data, config, transform=jitter, checkpoint_dir=tmp_path)
    assert_same_params(params(resumed), params(ref_model))
    with pytest.raises(CheckpointMismatchError, match="precision"):
        fit(new_model(), loss, data, cfg(epochs=5), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="precision must be one of"):
        cfg(precision="fp8")


def test_read_back_every_k_steps_gives_the_same_run() -> None:
    data = make_data(80)  # 5 steps per epoch
    a, b = new_model(), new_model()
    ha = fit(a, mse, data, cfg(epochs=2))
    hb = fit(b, mse, data, cfg(epochs=2, sync_every=3))
    assert_same_params(params(a), params(b))
    assert [r["train_loss"] for r in ha.records] == pytest.approx(
        [r["train_loss"] for r in hb.records], rel=1e-12
    )
    calls = {"n": 0}

    def nan_at_4(model, batch):
        calls["n"] += 1
        return mse(model, batch) * (math.nan if calls["n"] == 4 else 1.0)

    with pytest.raises(TrainingDiverged, match="epoch 1, step 4"):  # found at the read-back
        fit(new_model(), nan_at_4, data, cfg(epochs=1, sync_every=3))


def test_inputs_are_checked_on_the_first_batch_only() -> None:
    from hyperlab import MLP

    g = MLP([3, 4, 1])
    data = make_data(32)

    def poison_at(call: int):
        calls = {"n": 0}

        def transform(batch, gen):
            calls["n"] += 1
            x = batch["x"].clone()
            if calls["n"] == call:
                x[0, 0] = math.nan
            return {**batch, "x": x}

        return transform

    def loss(m, b):
        return ((m(b["x"]).squeeze(-1) - b["y"]) ** 2).mean()

    with pytest.raises(ValueError, match="x: contains NaN"):  # the first batch is checked
        fit(g.bind(), loss, data, cfg(epochs=1, batch_size=4), transform=poison_at(1))
    with pytest.raises(TrainingDiverged, match="step 3"):  # later ones: no check, no read-back
        fit(g.bind(), loss, data, cfg(epochs=1, batch_size=4), transform=poison_at(3))
