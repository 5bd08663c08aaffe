"""fit_seeds: the seeds of one architecture trained side by side give each seed what fit()
gives it alone, write fit()'s checkpoints, resume, and keep going when one seed diverges."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from hyperlab import MLP, HyperModel
from hyperlab.io import safe_torch_load
from hyperlab.train import TrainConfig, TrainingDiverged, fit, fit_seeds


def _model(seed: int) -> nn.Module:
    return HyperModel(MLP([6, 8, 3]), 5, [16], generator=torch.Generator().manual_seed(seed))


def _data(seed: int, n: int = 40) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + seed)
    return {"x": torch.randn(n, 6, generator=g), "cond": torch.randn(n, 5, generator=g),
            "y": torch.randint(0, 3, (n,), generator=g)}  # fmt: skip


def _loss(model, batch):
    return nn.functional.cross_entropy(model(batch["x"], batch["cond"]), batch["y"])


def _jitter(batch, gen):
    return {**batch, "x": batch["x"] + 0.1 * torch.randn(batch["x"].shape, generator=gen)}


def _cfg(seed: int, **kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=16, lr=0.05, seed=seed, progress=False, momentum=0.9,
                lr_decay=0.99)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _evaluate(data):
    def ev(model):
        return {"val": float(_loss(model, data))}

    return ev


@pytest.mark.parametrize("kw", [dict(), dict(optimizer="adam", momentum=0.0, lr=0.01)],
                         ids=["sgd-momentum", "adam"])  # fmt: skip
def test_side_by_side_equals_one_after_another(kw):
    seeds = [0, 1, 2]
    alone = [_model(s) for s in seeds]
    hist = [fit(m, _loss, _data(s), _cfg(s, **kw), transform=_jitter, evaluate=_evaluate(_data(s)))
            for m, s in zip(alone, seeds, strict=True)]  # fmt: skip
    together = [_model(s) for s in seeds]
    out = fit_seeds(together, _loss, [_data(s) for s in seeds], [_cfg(s, **kw) for s in seeds],
                    transform=_jitter, evaluate=_evaluate(_data(0)))  # fmt: skip
    for a, b in zip(alone, together, strict=True):
        for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-5), name
    for h, o in zip(hist, out, strict=True):
        assert [r["train_loss"] for r in o.records] == pytest.approx(
            [r["train_loss"] for r in h.records], rel=1e-5
        )
    assert out[0].records[0].keys() == hist[0].records[0].keys()


def test_checkpoints_are_fits_and_resume_either_way(tmp_path: Path):
    seeds = [0, 1]
    dirs = [tmp_path / f"s{s}" for s in seeds]
    ref = [_model(s) for s in seeds]
    for m, s in zip(ref, seeds, strict=True):
        fit(m, _loss, _data(s), _cfg(s, epochs=4), transform=_jitter)
    # two epochs side by side, then fit() finishes seed 0 and fit_seeds seed 1
    first = [_model(s) for s in seeds]
    fit_seeds(first, _loss, [_data(s) for s in seeds], [_cfg(s, epochs=2) for s in seeds],
              transform=_jitter, checkpoint_dirs=dirs)  # fmt: skip
    assert [safe_torch_load(d / "last.pt")["epoch"] for d in dirs] == [2, 2]
    assert (dirs[0] / "history.csv").read_text().count("\n") == 3
    m0 = _model(7)
    fit(m0, _loss, _data(0), _cfg(0, epochs=4), transform=_jitter, checkpoint_dir=dirs[0])
    m1 = _model(8)
    fit_seeds([m1], _loss, [_data(1)], [_cfg(1, epochs=4)], transform=_jitter,
              checkpoint_dirs=[dirs[1]])  # fmt: skip
    for a, b in zip((ref[0], ref[1]), (m0, m1), strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-5)
    # finished seeds are not trained again
    again = [_model(9), _model(10)]
    out = fit_seeds(again, _loss, [_data(s) for s in seeds], [_cfg(s, epochs=4) for s in seeds],
                    transform=_jitter, checkpoint_dirs=dirs)  # fmt: skip
    assert [len(h) for h in out] == [4, 4]


def test_one_seed_diverging_does_not_stop_the_others():
    datas = [_data(0) | {"poison": torch.zeros(40)}, _data(1) | {"poison": torch.ones(40)}]

    def loss(model, batch):  # seed 1's loss is NaN from its first step
        return _loss(model, batch) * torch.where(batch["poison"][0] > 0, math.nan, 1.0)

    res = fit_seeds([_model(0), _model(1)], loss, datas, [_cfg(0), _cfg(1)])
    assert isinstance(res[1], TrainingDiverged) and (res[1].epoch, res[1].step) == (1, 1)
    assert len(res[0]) == 3 and all(math.isfinite(r["train_loss"]) for r in res[0].records)
    alone = _model(0)
    hist = fit(alone, loss, datas[0], _cfg(0))
    assert [r["train_loss"] for r in res[0].records] == pytest.approx(
        [r["train_loss"] for r in hist.records], rel=1e-5
    )  # seed 0 as if alone


def test_what_cannot_be_batched_is_named():
    m = [_model(0), _model(1)]
    d = [_data(0), _data(1)]
    with pytest.raises(ValueError, match="TrainConfig.grad_clip: not batched"):
        fit_seeds(m, _loss, d, [_cfg(0, grad_clip=1.0), _cfg(1, grad_clip=1.0)])
    with pytest.raises(ValueError, match="may differ only in seed, got \\['lr'\\]"):
        fit_seeds(m, _loss, d, [_cfg(0), _cfg(1, lr=0.1)])
    with pytest.raises(ValueError, match="one architecture"):
        fit_seeds([_model(0), HyperModel(MLP([6, 9, 3]), 5, [16])], _loss, d, [_cfg(0), _cfg(1)])
