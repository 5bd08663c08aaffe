"""Table 1's "HN" row: a finite hypernetwork trained on the kernels' (image, pixel) samples.

The paper's architecture for this row is unknown (notes B.7); ours is described by
[`describe_hn`][hyperlab.experiments.infinite_width.representation_hn.describe_hn] and recorded in
every run's notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hyperlab.experiments.base import RunContext
from hyperlab.experiments.config import Config, param
from hyperlab.experiments.evaluate import evaluate_batches
from hyperlab.hypernet import HyperModel
from hyperlab.kernels import FourierFeatures
from hyperlab.primary import MLP
from hyperlab.train import TrainingDiverged


@dataclass(frozen=True)
class HNConfig(Config):
    """The trained hypernetwork of Table 1's HN row (our architecture; notes B.7)."""

    hn_runs: int = param(20, "trained hypernetworks per (task, N); 0 skips the HN row "
                         "(the paper: 20)", min=0)  # fmt: skip
    hn_f_depth: int = param(3, "layers of the HN's f", min=2)
    hn_f_width: int = param(256, "width of the HN's f", min=1)
    hn_g_depth: int = param(3, "layers of the HN's g", min=2)
    hn_g_width: int = param(32, "width of the HN's g", min=1)
    hn_fourier_features: int = param(128, "random Fourier features of the pixel coordinates "
                                     "(g's input)", min=2)  # fmt: skip
    hn_lr: float = param(1e-3, "Adam learning rate", positive=True)
    hn_batch_images: int = param(10, "images per batch (f runs once per image)", min=1)
    hn_steps: int = param(1000, "approximate optimizer steps", min=1)


def describe_hn(cfg: HNConfig, lengthscale: float) -> str:
    """One sentence describing the HN's architecture and training, for the notes."""
    return (
        f"f: {cfg.hn_f_depth} linear layers ({cfg.hn_f_depth - 1} hidden of width "
        f"{cfg.hn_f_width}, ReLU) on the same (masked, normalised) image the kernels' f sees; "
        f"g: {cfg.hn_g_depth} layers of width {cfg.hn_g_width} with biases on "
        f"{cfg.hn_fourier_features} random Fourier features of the raw pixel coordinates "
        f"(lengthscale {lengthscale:.3g}, i.e. the kernels' input kernel "
        "exp(-‖p - p'‖²/4)); standard parameterization, hyperfan-in init calibrated on the "
        f"training images; Adam lr {cfg.hn_lr}, batches of {cfg.hn_batch_images} images "
        f"(f runs once per image), about {cfg.hn_steps} steps, MSE loss, no early stopping"
    )


def train_hn(
    ctx: RunContext[HNConfig],
    task: str,
    run: int,
    x_imgs: torch.Tensor,
    pix: torch.Tensor,
    pix_imgs: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    coords: torch.Tensor,
    lengthscale: float,
) -> tuple[float, float, bool]:
    """Train one hypernetwork and return (test MSE, final train loss, diverged).

    f sees the (masked) image ``x_imgs`` (N, 784), as the kernels' f does; g sees random Fourier
    features of the pixel coordinates with the kernels' ``lengthscale`` (so g's input kernel is
    the same RBF the kernels use) and outputs the pixel's intensity. Training samples are exactly
    the kernels' (image, pixel) pairs: ``pix`` (N, P) pixel indices per image, grouped per image so
    that f runs once per image. Test MSE over all 784 pixels of the test images, like the kernels.
    """
    cfg = ctx.config
    n = x_imgs.shape[0]
    key = ("hn", task, n, run)
    gen = ctx.generator(*key, "init")
    ff = FourierFeatures(2, cfg.hn_fourier_features, lengthscale=lengthscale, generator=gen)
    feats = ff(coords.float().cpu())  # (784, k), fixed
    g = MLP([feats.shape[1], *[cfg.hn_g_width] * (cfg.hn_g_depth - 1), 1], "relu")
    x_f = x_imgs.float().cpu()
    hidden = [cfg.hn_f_width] * (cfg.hn_f_depth - 1)
    model = HyperModel(g, 784, hidden, init_cond=x_f, generator=gen)
    data = {
        "cond": x_f,
        "z": feats[pix.cpu()],  # (N, P, k)
        "y": torch.gather(pix_imgs.float().cpu(), 1, pix.cpu()),  # (N, P)
    }

    def loss(m, batch):
        return torch.nn.functional.mse_loss(m(batch["z"], batch["cond"]).squeeze(-1), batch["y"])

    batch = min(cfg.hn_batch_images, n)
    epochs = max(1, math.ceil(cfg.hn_steps * batch / n))
    try:
        hist = ctx.fit(model, loss, data, key=key, seed_key=(*key, "train"), epochs=epochs,
                       batch_size=batch, lr=cfg.hn_lr, optimizer="adam",
                       desc=f"HN {task} N={n} run {run}")  # fmt: skip
    except TrainingDiverged:
        return math.nan, math.nan, True
    model.eval()
    feats = feats.to(ctx.device)
    test = {"cond": x_test.float(), "y": y_test.float()}
    sums = evaluate_batches(
        lambda c: model(feats.expand(c.shape[0], *feats.shape), c).squeeze(-1), test,
        lambda pred, b: {"sq": ((pred - b["y"]) ** 2).sum()}, device=ctx.device, batch=50,
        inputs=("cond",),
    )  # fmt: skip
    mse = sums["sq"] / y_test.numel()
    return mse, float(hist.last()["train_loss"]), not math.isfinite(mse)
