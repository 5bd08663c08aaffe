"""Tests for hyperlab.data.tasks: rotations, rotation labels, synthetic task, colorization."""

from __future__ import annotations

import pytest
import torch

from hyperlab.data import (
    MNIST_MEAN,
    MNIST_STD,
    colorization_batch,
    make_synthetic_target,
    rotation_batch,
    rotation_pair_batch,
    synthetic_task,
)
from hyperlab.data.tasks import LUMA_WEIGHTS, rotate_images, rotation_labels, to_grayscale


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 4, c: int = 1, h: int = 28, w: int = 28) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=_gen(123))


# ------------------------------------------------------------------------------------------
# rotate_images
# ------------------------------------------------------------------------------------------


def test_rotate_zero_and_full_turn_are_identity() -> None:
    x = _images(3, 2)
    assert torch.allclose(rotate_images(x, torch.zeros(3)), x, atol=1e-5)  # float32 grid
    assert torch.allclose(rotate_images(x, torch.full((3,), 360.0)), x, atol=1e-5)


@pytest.mark.parametrize(("angle", "k"), [(90.0, 1), (180.0, 2), (270.0, 3), (-90.0, -1)])
def test_rotate_right_angles_match_rot90(angle: float, k: int) -> None:
    x = _images(2, 3)
    out = rotate_images(x, torch.full((2,), angle))
    ref = torch.rot90(x, k, dims=(-2, -1))
    assert torch.allclose(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)


def test_rotate_is_counter_clockwise() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 4] = 1.0  # top-right corner
    out = rotate_images(x, torch.tensor([90.0]))
    assert out[0, 0, 0, 0].item() == pytest.approx(1.0, abs=1e-5)  # -> top-left
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_rotate_non_square_and_per_image_angles() -> None:
    x = _images(3, 1, 20, 30)
    out = rotate_images(x, torch.full((3,), 180.0))
    assert torch.allclose(out, x.flip(-1, -2), atol=1e-5)
    angles = torch.tensor([10.0, 200.0, 33.3])
    both = rotate_images(x, angles)
    for i in range(3):  # each image uses its own angle
        assert torch.allclose(both[i], rotate_images(x[i : i + 1], angles[i : i + 1])[0])
    assert rotate_images(x[:, 0], angles).shape == (3, 20, 30)  # (N, H, W) accepted
    with pytest.raises(TypeError):
        rotate_images(x.to(torch.uint8), angles)


def test_rotation_labels_boundaries() -> None:
    a = torch.tensor([0, 14.9, 15.1, 29, 44.9, 45.1, 330, 344.9, 345.1, 350, 359, 359.999, 360])
    expected = [0, 0, 1, 1, 1, 2, 11, 11, 0, 0, 0, 0, 0]
    labels = rotation_labels(a)
    assert labels.dtype == torch.int64 and labels.tolist() == expected
    assert rotation_labels(torch.tensor([-10.0, 725.0])).tolist() == [0, 0]
    quirk = rotation_labels(a, authors_quirk=True)
    assert quirk.tolist() == [0, 0, 1, 1, 1, 2, 11, 11, 11, 11, 11, 11, 11]
    assert rotation_labels(torch.tensor([15.0]), authors_quirk=True).tolist() == [0]
    r = torch.rand(10000, generator=_gen()) * 345.0
    assert torch.equal(rotation_labels(r), rotation_labels(r, authors_quirk=True))


# ------------------------------------------------------------------------------------------
# rotation batches
# ------------------------------------------------------------------------------------------


def test_rotation_batch_contents() -> None:
    imgs = (torch.rand(6, 28, 28, generator=_gen(1)) * 255).to(torch.uint8)  # MNIST-like
    b = rotation_batch(imgs, _gen(7))
    assert b["x"].shape == b["cond"].shape == (6, 784) and b["x"].dtype == torch.float32
    assert b["y"].dtype == torch.int64 and b["y"].tolist() == rotation_labels(b["angle"]).tolist()
    assert ((b["angle"] >= 0) & (b["angle"] < 360)).all()
    f = imgs.float().div(255).unsqueeze(1)
    assert torch.allclose(b["cond"], ((f - MNIST_MEAN) / MNIST_STD).flatten(1), atol=1e-5)
    rot = rotate_images(f, b["angle"])
    assert torch.allclose(b["x"], ((rot - MNIST_MEAN) / MNIST_STD).flatten(1), atol=1e-5)
    raw = rotation_batch(imgs, _gen(7), normalize=False)
    assert torch.allclose(raw["cond"], f.flatten(1)) and torch.equal(raw["angle"], b["angle"])
    again = rotation_batch(imgs, _gen(7))
    assert torch.equal(again["x"], b["x"])  # reproducible from the generator
    g = _gen(7)
    first, second = rotation_batch(imgs, g), rotation_batch(imgs, g)
    assert not torch.equal(first["angle"], second["angle"])  # fresh angles each call


def test_rotation_batch_rgb_and_label_spread() -> None:
    imgs = torch.rand(2000, 3, 8, 8, generator=_gen(2))
    b = rotation_batch(imgs, _gen(3), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert b["x"].shape == (2000, 192)
    counts = torch.bincount(b["y"], minlength=12)
    assert counts.min() > 100  # all 12 classes, roughly uniform


def test_rotation_pair_batch() -> None:
    imgs = _images(5)
    b = rotation_pair_batch(imgs, _gen(4), normalize=False)
    assert b["y"].tolist() == rotation_labels(b["angle2"]).tolist()
    assert torch.allclose(b["cond"], rotate_images(imgs, b["angle1"]).flatten(1), atol=1e-6)
    assert torch.allclose(
        b["x"], rotate_images(imgs, b["angle1"] + b["angle2"]).flatten(1), atol=1e-6
    )


# ------------------------------------------------------------------------------------------
# Synthetic task
# ------------------------------------------------------------------------------------------


def test_synthetic_task_shapes_and_target() -> None:
    t = synthetic_task(3000, 500, 50, 20, seed=3)
    assert set(t) == {"train", "test"}
    for split, n in (("train", 3000), ("test", 500)):
        s = t[split]
        assert s["x"].shape == (n, 50) and s["cond"].shape == (n, 20) and s["y"].shape == (n,)
        assert all(v.dtype == torch.float32 for v in s.values())
    target = make_synthetic_target(20, 50, generator=_gen(3))
    s = t["train"]
    y = (s["x"] * target.h(s["cond"])).sum(-1)
    assert torch.allclose(s["y"], y, atol=1e-5)
    assert 0.7 < s["y"].var().item() < 1.4  # O(1) variance by construction
    assert abs(s["x"].mean().item()) < 0.05 and abs(s["cond"].std().item() - 1) < 0.05
    t2 = synthetic_task(3000, 500, 50, 20, seed=3)
    assert torch.equal(t2["test"]["y"], t["test"]["y"])
    assert not torch.equal(synthetic_task(3000, 500, 50, 20, seed=4)["test"]["y"], t["test"]["y"])


def test_synthetic_target_properties() -> None:
    target = make_synthetic_target(30, 40, hidden=(64, 32), generator=_gen(0))
    cond = torch.randn(4000, 30, generator=_gen(1))
    h = target.h(cond)
    assert h.shape == (4000, 40)
    assert torch.allclose(target.h(-cond), -h, atol=1e-5)  # odd: no I-independent part
    assert 0.7 < (h**2).sum(1).mean().item() < 1.4  # E||h||^2 ~ 1
    assert not any(p.requires_grad for p in target.buffers()) and not list(target.parameters())


def test_synthetic_task_held_out_conditions() -> None:
    t = synthetic_task(1000, 300, 16, 8, n_conditions=10, n_unseen_conditions=4, seed=0)
    train, test, unseen = t["train"], t["test"], t["test_unseen"]
    assert unseen["x"].shape == (300, 16)
    assert torch.bincount(train["cond_id"]).tolist() == [100] * 10  # evenly spread
    seen_conds = torch.unique(train["cond"], dim=0)
    assert seen_conds.shape[0] == 10
    assert torch.unique(unseen["cond"], dim=0).shape[0] == 4

    # test: new x, seen conditions; test_unseen: conditions never seen in training.
    def member(rows: torch.Tensor) -> torch.Tensor:  # exact row membership in seen_conds
        return (rows[:, None, :] == seen_conds[None]).all(-1).any(1)

    assert member(test["cond"]).all() and not member(unseen["cond"]).any()
    assert torch.cdist(unseen["cond"], seen_conds).min() > 1.0
    assert set(unseen["cond_id"].tolist()) == {10, 11, 12, 13}
    assert torch.cdist(test["x"], train["x"]).min() > 0
    target = make_synthetic_target(8, 16, generator=_gen(0))
    for s in (train, test, unseen):
        assert torch.allclose(s["y"], target(s["x"], s["cond"]), atol=1e-5)
    same_cond = train["cond_id"] == 0
    assert (train["cond"][same_cond] == train["cond"][same_cond][0]).all()


# ------------------------------------------------------------------------------------------
# Colorization
# ------------------------------------------------------------------------------------------


def test_colorization_batch() -> None:
    rgb = (torch.rand(5, 3, 6, 7, generator=_gen(5)) * 255).to(torch.uint8)
    b = colorization_batch(rgb, _gen(6), n_pixels=10)
    assert b["x"].shape == (50, 3) and b["y"].shape == (50, 3) and b["cond"].shape == (50, 42)
    assert b["y"].min() >= 0 and b["y"].max() <= 1
    assert b["x"][:, :2].min() >= -1 and b["x"][:, :2].max() <= 1
    w = torch.tensor(LUMA_WEIGHTS)
    assert torch.allclose(b["x"][:, 2], b["y"] @ w, atol=1e-6)  # gray input matches RGB target
    gray = to_grayscale(rgb).flatten(1)
    assert torch.allclose(b["cond"], gray[b["image_index"]])
    assert torch.allclose(b["x"][:, 2], b["cond"].gather(1, b["pixel"][:, None])[:, 0])
    row, col = b["pixel"] // 7, b["pixel"] % 7
    assert torch.allclose(b["x"][:, 0], row / 5 * 2 - 1) and torch.allclose(
        b["x"][:, 1], col / 6 * 2 - 1
    )
    f = rgb.float().div(255)
    assert torch.allclose(b["y"], f[b["image_index"], :, row, col], atol=1e-6)
    for i in range(5):  # distinct pixels per image
        assert b["pixel"][b["image_index"] == i].unique().numel() == 10


def test_colorization_all_pixels_unflattened() -> None:
    rgb = torch.rand(2, 3, 4, 4, generator=_gen(8))
    b = colorization_batch(rgb, None, n_pixels=None, flatten=False)
    assert b["x"].shape == (2, 16, 3) and b["y"].shape == (2, 16, 3) and b["cond"].shape == (2, 16)
    assert b["x"][0, 0, :2].tolist() == [-1.0, -1.0] and b["x"][0, -1, :2].tolist() == [1.0, 1.0]
    assert torch.allclose(b["y"].transpose(1, 2).reshape(2, 3, 4, 4), rgb)
    with pytest.raises(ValueError):
        colorization_batch(rgb, _gen(), n_pixels=17)


def test_split_tasks_pair_digits_with_labels_within_the_task():
    from hyperlab.data.tasks import split_tasks

    images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    labels = torch.arange(50) % 10
    tasks = split_tasks(images, labels, 5)
    assert len(tasks) == 5
    for t, task in enumerate(tasks):
        assert task["x"].shape == (10, 784) and 0 <= float(task["x"].min())
        assert float(task["x"].max()) <= 1.0
        assert sorted(set(task["y"].tolist())) == [0, 1]
        orig = labels[(labels // 2) == t]
        assert torch.equal(task["y"], orig % 2)
    with pytest.raises(ValueError, match="n_tasks"):
        split_tasks(images, labels, 6)


def test_permuted_tasks_share_permutations_across_splits_and_pad():
    from hyperlab.data.tasks import PermutedTasks

    a = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    b = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    train = PermutedTasks(a, torch.arange(6), 3, seed=7, padding=2)
    test = PermutedTasks(b, torch.arange(4), 3, seed=7, padding=2)
    assert len(train) == 3 and train[0]["x"].shape == (6, 32 * 32)
    assert torch.equal(train[0]["x"].reshape(6, 32, 32)[:, 2:30, 2:30], a.float() / 255)
    for t in range(3):
        assert torch.equal(train.permutations[t], test.permutations[t])
    assert not torch.equal(train.permutations[1], train.permutations[2])
    # a permutation moves pixels, it does not change them
    assert torch.equal(train[1]["x"].sort(1).values, train[0]["x"].sort(1).values)
    assert len(train[1:]) == 2
