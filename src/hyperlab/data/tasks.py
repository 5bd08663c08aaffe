"""Task builders for the papers' experiments; every builder is batched (no loop over samples).

Conventions shared by all builders: a batch is a dict with ``"x"`` (the primary network's
input), ``"cond"`` (the hypernetwork's / embedding's input I) and ``"y"`` (the target), one row
per sample. Randomness comes only from an explicit ``torch.Generator``.

* [`synthetic_task`][hyperlab.data.tasks.synthetic_task]: y(x, I) = <x, h(I)>, modularity paper
(Galanti & Wolf 2020), Sec. 5.
* [`rotation_batch`][hyperlab.data.tasks.rotation_batch]: predict the rotation of an image,
modularity paper Sec. 5.
* [`rotation_pair_batch`][hyperlab.data.tasks.rotation_pair_batch]: the infinite-width paper's
rotation variant (Littwin et al. 2020;
  notes B.4).
* [`colorization_batch`][hyperlab.data.tasks.colorization_batch]: modularity paper, appendix 1.3
(our design; the authors' code
  only has a stub).
* [`split_tasks`][hyperlab.data.tasks.split_tasks],
[`PermutedTasks`][hyperlab.data.tasks.PermutedTasks]: SplitMNIST and PermutedMNIST, the task
  sequences of continual learning with hypernetworks (von Oswald et al. 2020), as
  ``{"x", "y"}`` per task (labels within the task).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .datasets import MNIST_MEAN, MNIST_STD, normalize, to_float

__all__ = [
    "LUMA_WEIGHTS",
    "N_ROTATION_CLASSES",
    "PermutedTasks",
    "SigmoidTarget",
    "colorization_batch",
    "make_synthetic_target",
    "rotate_images",
    "rotation_batch",
    "rotation_labels",
    "rotation_pair_batch",
    "split_tasks",
    "synthetic_task",
    "to_grayscale",
]

N_ROTATION_CLASSES = 12
"""Rotation classes: multiples of 30 degrees, 0..330."""

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B (as in PIL's ``convert('L')``)."""


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _generator_seed(seed: int, stream: int) -> torch.Generator:
    """An independent generator for (seed, stream), so streams do not overlap across seeds."""
    state = np.random.SeedSequence([seed, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _rand(shape: Sequence[int], generator: torch.Generator | None, device: torch.device):
    """U[0, 1) drawn on the generator's device, then moved to ``device``."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(tuple(shape), generator=generator, device=gdev).to(device)


def _as_nchw_float(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W), uint8 or float in [0, 1] -> float (N, C, H, W)."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4:
        raise ValueError(f"expected images (N, H, W) or (N, C, H, W), got {tuple(images.shape)}")
    return images if images.is_floating_point() else to_float(images)


def _maybe_normalize(
    images: torch.Tensor,
    enabled: bool,
    mean: float | Sequence[float],
    std: float | Sequence[float],
) -> torch.Tensor:
    return normalize(images, mean, std) if enabled else images


# --------------------------------------------------------------------------------------------
# Synthetic target (modularity paper, Sec. 5 "Synthetic Experiments")
# --------------------------------------------------------------------------------------------


def _centered_sigmoid_second_moment(gain: float) -> float:
    """E[(sigmoid(gain * z) - 1/2)^2] for z ~ N(0, 1), by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    s = 1.0 / (1.0 + np.exp(-gain * nodes)) - 0.5
    return float((weights * s**2).sum() / math.sqrt(2 * math.pi))


#: The synthetic targets: today's centred and rescaled net, and the plain sigmoid net.
TARGET_KINDS = ("centred", "sigmoid")


class SigmoidTarget(nn.Module):
    """Fixed random target y(x, I) = <x, h(I)>, h a fully connected sigmoid net R^d_I -> R^d_x.

    Modularity paper, Sec. 5: h is "a three-layers fully-connected sigmoid neural network"
    (no widths or init given). Linear layers d_I -> hidden... -> d_x with a sigmoid after every
    hidden layer and a linear output; default hidden = (100, 100), i.e. three linear layers.

    ``kind="sigmoid"``: the plain network, ``nn.Linear``'s default init (weights and biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))), unscaled. Most of Var y is then the I-independent part
    <x, E_I h(I)> (the sigmoids' mean passes through), which the least-squares fit of y on x
    captures; see [`best_independent_mse`][hyperlab.data.tasks.best_independent_mse].

    ``kind="centred"``: weights are Gaussian, scaled so that every hidden pre-activation has
    std ``gain`` for I ~ N(0, I) (default 2: not saturated, yet only ~85% of the variance of h
    is linear in I; gain 4 gives ~70%). Each layer after a sigmoid gets the bias -W @ 1/2, so it
    sees the centred sigmoid; this makes h odd (h(-I) = -h(I), so E_I h(I) = 0 and y really
    depends on I). The output layer is scaled so that E||h(I)||^2 ~= 1, hence Var y ~= 1 for
    x, I standard normal. The weights are buffers (never trained) and move with ``.to()``.
    """

    def __init__(
        self,
        d_I: int,
        d_x: int,
        hidden: Sequence[int] = (100, 100),
        *,
        generator: torch.Generator | None = None,
        gain: float = 2.0,
        kind: str = "centred",
    ) -> None:
        super().__init__()
        if kind not in TARGET_KINDS:
            raise ValueError(f"kind: expected one of {TARGET_KINDS}, got {kind!r}")
        self.d_I, self.d_x, self.hidden, self.gain = d_I, d_x, tuple(hidden), gain
        self.kind = kind
        widths = (d_I, *self.hidden, d_x)
        m = _centered_sigmoid_second_moment(gain)
        self.n_layers = len(widths) - 1
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if kind == "sigmoid":  # nn.Linear's default init, drawn from the generator
                bound = 1.0 / math.sqrt(fan_in)
                w = (torch.rand(fan_out, fan_in, generator=generator) * 2 - 1) * bound
                b = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
                self.register_buffer(f"weight{i}", w)
                self.register_buffer(f"bias{i}", b)
                continue
            in_moment = 1.0 if i == 0 else m  # E[input^2] per coordinate
            if i < self.n_layers - 1:
                std = gain / math.sqrt(fan_in * in_moment)
            else:
                std = 1.0 / math.sqrt(fan_in * in_moment * fan_out)
            w = torch.randn(fan_out, fan_in, generator=generator) * std
            b = torch.zeros(fan_out) if i == 0 else -0.5 * w.sum(1)
            self.register_buffer(f"weight{i}", w)
            self.register_buffer(f"bias{i}", b)

    def h(self, cond: torch.Tensor) -> torch.Tensor:
        """h(I): (..., d_I) -> (..., d_x)."""
        a = cond
        for i in range(self.n_layers):
            a = F.linear(a, getattr(self, f"weight{i}"), getattr(self, f"bias{i}"))
            if i < self.n_layers - 1:
                a = torch.sigmoid(a)
        return a

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """y(x, I) = <x, h(I)>: (..., d_x), (..., d_I) -> (...)."""
        return (x * self.h(cond)).sum(-1)


def make_synthetic_target(
    d_I: int,
    d_out: int,
    hidden: Sequence[int] = (100, 100),
    generator: torch.Generator | None = None,
    *,
    gain: float = 2.0,
    kind: str = "centred",
) -> SigmoidTarget:
    """The modularity paper's synthetic target with h: R^d_I -> R^d_out (see SigmoidTarget)."""
    return SigmoidTarget(d_I, d_out, hidden, generator=generator, gain=gain, kind=kind)


def best_independent_mse(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor]) -> float:
    """Test MSE of the best predictor that ignores I: least squares of y on [x, 1] (train)."""

    def design(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)

    coef = torch.linalg.lstsq(design(train["x"]), train["y"].double().unsqueeze(1)).solution
    pred = (design(test["x"]) @ coef).squeeze(1)
    return float((pred - test["y"].double()).pow(2).mean())


@torch.no_grad()
def synthetic_task(
    n_train: int,
    n_test: int,
    d_x: int,
    d_I: int,
    *,
    n_conditions: int | None = None,
    n_unseen_conditions: int | None = None,
    seed: int = 0,
    hidden: Sequence[int] = (100, 100),
    target: SigmoidTarget | None = None,
    kind: str = "centred",
) -> dict[str, dict[str, torch.Tensor]]:
    """Train/test data for y(x, I) = <x, h(I)> with x, I ~ N(0, 1) (modularity paper, Sec. 5).

    Returns ``{"train": ..., "test": ...}``, each a dict of float32 tensors ``x`` (n, d_x),
    ``cond`` (n, d_I), ``y`` (n,). Without ``n_conditions`` every sample has its own I (the
    paper's setting). With ``n_conditions`` that many conditions are drawn and the samples are
    spread evenly over them (many x share one I; ``cond_id`` int64 says which); ``test`` then
    has fresh x for the seen conditions, and a third split ``test_unseen`` (n_test samples)
    uses ``n_unseen_conditions`` (default: ``n_conditions``) held-out conditions, with ids
    starting at ``n_conditions``.

    The target is ``make_synthetic_target(d_I, d_x, hidden, torch.Generator().manual_seed(seed),
    kind=kind)`` unless ``target`` is given; the data comes from an independent stream of the
    same seed.
    """
    if target is None:
        gen = torch.Generator().manual_seed(seed)
        target = make_synthetic_target(d_I, d_x, hidden, gen, kind=kind)
    if (target.d_I, target.d_x) != (d_I, d_x):
        raise ValueError(f"target maps {target.d_I} -> {target.d_x}, expected {d_I} -> {d_x}")
    target = target.to("cpu")
    gen = _generator_seed(seed, 1)

    def split(n: int, conds: torch.Tensor | None = None, id_offset: int = 0):
        x = torch.randn(n, d_x, generator=gen)
        if conds is None:
            cond = torch.randn(n, d_I, generator=gen)
            return {"x": x, "cond": cond, "y": target(x, cond).float()}
        # Spread the samples evenly over the conditions, in random order.
        local = (torch.arange(n) % conds.shape[0])[torch.randperm(n, generator=gen)]
        cond = conds[local]
        return {"x": x, "cond": cond, "y": target(x, cond).float(), "cond_id": local + id_offset}

    if n_conditions is None:
        return {"train": split(n_train), "test": split(n_test)}
    n_unseen = n_conditions if n_unseen_conditions is None else n_unseen_conditions
    if n_conditions < 1 or n_unseen < 1:
        raise ValueError("n_conditions and n_unseen_conditions must be >= 1")
    seen = torch.randn(n_conditions, d_I, generator=gen)
    unseen = torch.randn(n_unseen, d_I, generator=gen)
    train = split(n_train, seen)
    test = split(n_test, seen)
    test_unseen = split(n_test, unseen, id_offset=n_conditions)
    return {"train": train, "test": test, "test_unseen": test_unseen}


# --------------------------------------------------------------------------------------------
# Rotations
# --------------------------------------------------------------------------------------------


def rotate_images(
    images: torch.Tensor, angles_deg: torch.Tensor | float, *, mode: str = "bilinear"
) -> torch.Tensor:
    """Rotate each image counter-clockwise about its centre by its angle (degrees).

    One batched ``affine_grid`` + ``grid_sample`` call (zeros padding, align_corners=False),
    like torchvision's ``F.rotate(img, angle)`` with expand=False and fill 0. Works for
    (N, C, H, W) or (N, H, W) float images and non-square images (rotation in pixel units).
    ``mode="nearest"`` matches the authors' PIL default; the default is bilinear.
    """
    if not images.is_floating_point():
        raise TypeError(f"rotate_images needs float images (use to_float), got {images.dtype}")
    squeeze = images.ndim == 3
    x = images.unsqueeze(1) if squeeze else images
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W) or (N, H, W), got {tuple(images.shape)}")
    n, _, h, w = x.shape
    a = torch.as_tensor(angles_deg).detach().to("cpu", torch.float64)
    a = a.expand(n) if a.ndim == 0 else a.reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"got {a.shape[0]} angles for {n} images")
    rad = torch.deg2rad(a)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # Output pixel p' samples the input at R(-angle) p', in normalised coordinates scaled so the
    # rotation is a true rotation in pixel units (x right, y down => counter-clockwise on screen).
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * h / w
    theta[:, 1, 0] = sin * w / h
    theta[:, 1, 1] = cos
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.squeeze(1) if squeeze else out


def rotation_labels(angles_deg: torch.Tensor, *, authors_quirk: bool = False) -> torch.Tensor:
    """Class of the nearest multiple of 30 degrees: 0..11 (int64), wrapping modulo 360.

    Angles in (345, 360) go to class 0. The authors' code (``min`` over [0, 30, ..., 330]
    without wrap-around) maps them to class 11; ``authors_quirk=True`` reproduces that,
    including its tie rule (exact midpoints go to the lower class).
    """
    t = torch.as_tensor(angles_deg)
    a = t.detach().to("cpu", torch.float64)  # float64 on CPU: exact boundaries on any device
    if authors_quirk:
        centers = torch.arange(N_ROTATION_CLASSES, dtype=torch.float64) * 30.0
        labels = (a.unsqueeze(-1) - centers).abs().argmin(-1)
    else:
        k = torch.floor(torch.remainder(a, 360.0) / 30.0 + 0.5)
        labels = torch.remainder(k, N_ROTATION_CLASSES)
    return labels.to(t.device, torch.int64)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def rotation_batch(
    images: torch.Tensor,
    generator: torch.Generator | None,
    *,
    normalize: bool = True,
    mean: float | Sequence[float] = MNIST_MEAN,
    std: float | Sequence[float] = MNIST_STD,
    authors_quirk: bool = False,
    mode: str = "bilinear",
) -> dict[str, torch.Tensor]:
    """Rotation prediction (modularity paper, Sec. 5): I = image, x = I rotated by a ~ U[0, 360).

    ``images``: (N, C, H, W) or (N, H, W), uint8 or float in [0, 1]. A fresh angle is drawn per
    image on every call (as the authors do per fetch). Returns ``x`` (rotated, flattened),
    ``cond`` (original, flattened), ``y`` (class of the nearest multiple of 30 degrees, int64)
    and ``angle`` (degrees). Both images are normalised after rotating (zero fill first); the
    default constants are MNIST's, which the authors also used for CIFAR-10.
    """
    img = _as_nchw_float(images)
    angle = _rand((img.shape[0],), generator, img.device) * 360.0
    rot = rotate_images(img, angle, mode=mode)
    return {
        "x": _flat(_maybe_normalize(rot, normalize, mean, std)),
        "cond": _flat(_maybe_normalize(img, normalize, mean, std)),
        "y": rotation_labels(angle, authors_quirk=authors_quirk),
        "angle": angle,
    }


def rotation_pair_batch(
    images: torch.Tensor,
    generator: torch.Generator | None,
    *,
    normalize: bool = True,
    mean: float | Sequence[float] = MNIST_MEAN,
    std: float | Sequence[float] = MNIST_STD,
    authors_quirk: bool = False,
    mode: str = "bilinear",
) -> dict[str, torch.Tensor]:
    """Infinite-width paper's rotation task (notes B.4): predict the relative rotation.

    With a1, a2 ~ U[0, 360): ``cond`` = image rotated by a1 (f's input), ``x`` = image rotated
    by a1 + a2 (g's input, one interpolation), ``y`` = class of a2. Also returns ``angle1``,
    ``angle2``. For CIFAR-10 the authors normalise with mean = std = (0.5, 0.5, 0.5).
    """
    img = _as_nchw_float(images)
    n = img.shape[0]
    a = _rand((2, n), generator, img.device) * 360.0
    a1, a2 = a[0], a[1]
    both = rotate_images(torch.cat([img, img]), torch.cat([a1, a1 + a2]), mode=mode)
    ref, rot = both[:n], both[n:]
    return {
        "x": _flat(_maybe_normalize(rot, normalize, mean, std)),
        "cond": _flat(_maybe_normalize(ref, normalize, mean, std)),
        "y": rotation_labels(a2, authors_quirk=authors_quirk),
        "angle1": a1,
        "angle2": a2,
    }


# --------------------------------------------------------------------------------------------
# Colorization (modularity paper, appendix 1.3)
# --------------------------------------------------------------------------------------------


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """RGB (..., 3, H, W) -> luma (..., H, W) with ITU-R BT.601 weights; float in [0, 1]."""
    x = images if images.is_floating_point() else to_float(images)
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected RGB images (..., 3, H, W), got {tuple(images.shape)}")
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device)
    return torch.einsum("...chw,c->...hw", x, w)


def colorization_batch(
    images: torch.Tensor,
    generator: torch.Generator | None,
    *,
    n_pixels: int | None = 16,
    flatten: bool = True,
) -> dict[str, torch.Tensor]:
    """Colorization (modularity paper, appendix; our design, the authors' code is a stub).

    I = the grayscale image (flattened, in [0, 1]); x = (row, col) of a pixel scaled to
    [-1, 1] plus its gray value; target = that pixel's RGB in [0, 1] (3 outputs, MSE).
    ``images``: RGB (N, 3, H, W), uint8 or float in [0, 1]. For each image ``n_pixels``
    distinct pixels are drawn (batched gather); ``n_pixels=None`` takes every pixel in
    row-major order (no randomness, e.g. to colour whole test images).

    With ``flatten=True`` rows are samples: ``x`` (N*P, 3), ``cond`` (N*P, H*W), ``y`` (N*P, 3),
    plus ``image_index`` (N*P,). With ``flatten=False``: ``x`` (N, P, 3), ``cond`` (N, H*W),
    ``y`` (N, P, 3), so a hypernetwork can evaluate f(I) once per image. ``pixel`` holds the
    flat pixel indices.
    """
    rgb = images if images.is_floating_point() else to_float(images)
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected RGB images (N, 3, H, W), got {tuple(images.shape)}")
    n, _, h, w = rgb.shape
    hw = h * w
    gray = to_grayscale(rgb).reshape(n, hw)
    if n_pixels is None:
        idx = torch.arange(hw, device=rgb.device).expand(n, hw)
    else:
        if not 1 <= n_pixels <= hw:
            raise ValueError(f"n_pixels must be in 1..{hw}, got {n_pixels}")
        # Distinct pixels per image: the n_pixels largest of i.i.d. uniforms.
        idx = _rand((n, hw), generator, rgb.device).topk(n_pixels, dim=1).indices
    p = idx.shape[1]
    row = torch.div(idx, w, rounding_mode="floor")
    col = idx - row * w
    coord_r = row.to(rgb.dtype) * (2.0 / max(h - 1, 1)) - 1.0
    coord_c = col.to(rgb.dtype) * (2.0 / max(w - 1, 1)) - 1.0
    x = torch.stack([coord_r, coord_c, gray.gather(1, idx)], dim=-1)  # (N, P, 3)
    y = rgb.reshape(n, 3, hw).gather(2, idx.unsqueeze(1).expand(n, 3, p)).transpose(1, 2)
    if not flatten:
        return {"x": x, "cond": gray, "y": y.contiguous(), "pixel": idx}
    image_index = torch.arange(n, device=rgb.device).repeat_interleave(p)
    return {
        "x": x.reshape(n * p, 3),
        "cond": gray[image_index],
        "y": y.reshape(n * p, 3),
        "image_index": image_index,
        "pixel": idx.reshape(n * p),
    }


# --------------------------------------------------------------------------------------------
# Continual learning: SplitMNIST, PermutedMNIST (von Oswald et al. 2020)
# --------------------------------------------------------------------------------------------


def _flat_unit(images: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """(N, H, W) uint8 or float images -> (N, (H + 2p)(W + 2p)) float in [0, 1], zero-padded."""
    x = to_float(images) if not images.is_floating_point() else images.float()
    if x.ndim != 3:
        raise ValueError(f"images: expected (N, H, W), got {tuple(images.shape)}")
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    return x.reshape(len(x), -1)


def split_tasks(images: torch.Tensor, labels: torch.Tensor, n_tasks: int = 5
                ) -> list[dict[str, torch.Tensor]]:  # fmt: skip
    """SplitMNIST: task t holds the digits 2t and 2t+1 with labels 0, 1 (within the task);
    x flattened, pixels in [0, 1] (the released code's inputs)."""
    if not 1 <= n_tasks <= 5:
        raise ValueError(f"n_tasks: expected 1..5 (pairs of the 10 digits), got {n_tasks}")
    if len(images) != len(labels):
        raise ValueError(f"labels: expected one per image ({len(images)}), got {len(labels)}")
    x = _flat_unit(images)
    task = torch.div(labels, 2, rounding_mode="floor")
    return [{"x": x[task == t], "y": labels[task == t] % 2} for t in range(n_tasks)]


class PermutedTasks(Sequence[dict[str, torch.Tensor]]):
    """PermutedMNIST: task t is the whole dataset with the pixels (after zero-padding by
    ``padding``) shuffled by the permutation of task t; task 0 is the identity, as in the
    released code; the permutations come from ``seed``. Built when a task is read (ten
    padded copies of MNIST's training set would take 2.4 GB): a lazy sequence of
    ``{"x", "y"}``. The same ``seed`` gives the same permutations for the train and test
    splits."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n_tasks: int, *,
                 seed: int, padding: int = 2):  # fmt: skip
        if n_tasks < 1:
            raise ValueError(f"n_tasks: expected a positive int, got {n_tasks}")
        if len(images) != len(labels):
            raise ValueError(f"labels: expected one per image ({len(images)}), got {len(labels)}")
        self.x = _flat_unit(images, padding)
        self.y = labels
        g = torch.Generator().manual_seed(seed)
        d = self.x.shape[1]
        self.permutations = [torch.arange(d)] + [torch.randperm(d, generator=g)
                                                 for _ in range(n_tasks - 1)]  # fmt: skip

    def __len__(self) -> int:
        return len(self.permutations)

    @overload
    def __getitem__(self, t: int) -> dict[str, torch.Tensor]: ...
    @overload
    def __getitem__(self, t: slice) -> list[dict[str, torch.Tensor]]: ...
    def __getitem__(
        self, t: int | slice
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        if isinstance(t, slice):
            return [self[i] for i in range(len(self))[t]]
        return {"x": self.x[:, self.permutations[t]], "y": self.y}
