"""An implicit neural representation: a hypernetwork maps each MNIST digit's learned embedding to
the weights of a SIREN (x, y) -> intensity (Sitzmann et al. 2020), against one SIREN trained
per digit with the same number of Adam steps. Prints the mean PSNR of both.

    python examples/siren_mnist.py            # 16 digits, 2,000 steps
    python examples/siren_mnist.py --tiny     # seconds
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from hyperlab import MLP, HyperModel
from hyperlab.data import load_mnist


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image, intensities in [0, 1]: 10 log10(1 / MSE)."""
    mse = (pred - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def save_reconstructions(out: str, *rows: torch.Tensor) -> None:
    """Digits (columns) as ground truth, the hypernetwork's SIREN, the per-digit SIREN (rows)."""
    import matplotlib.pyplot as plt  # only when a figure is asked for

    from hyperlab.plots import save_figure

    k = min(rows[0].shape[0], 8)
    fig, axes = plt.subplots(3, k, figsize=(1.2 * k, 3.8), squeeze=False)
    for r, (name, row) in enumerate(zip(("data", "hypernetwork", "per digit"), rows, strict=True)):
        for c in range(k):
            axes[r, c].imshow(row[c].reshape(28, 28).clamp(0, 1), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name)
    save_figure(fig, f"{out}/reconstructions.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tiny", action="store_true", help="4 digits, 300 steps")
    ap.add_argument("--figure-dir", default=None, help="write reconstructions.png here")
    args = ap.parse_args()
    if args.tiny:
        args.digits, args.steps = 4, 300
    torch.manual_seed(0)
    images, _ = load_mnist("test", args.data_dir)
    img = images[: args.digits].float() / 255  # (K, 28, 28)
    k = args.digits
    side = torch.linspace(-1, 1, 28)
    coords = torch.stack(torch.meshgrid(side, side, indexing="ij"), -1).reshape(-1, 2)  # (784, 2)
    target = img.reshape(k, -1, 1)  # (K, 784, 1)
    x = coords.expand(k, -1, -1)  # every digit's pixel grid
    siren = MLP([2, args.width, args.width, 1], "sine", omega0=30.0)

    # the hypernetwork: a learned embedding per digit -> all the SIREN's weights
    emb = torch.nn.Parameter(torch.randn(k, 32) * 0.1)
    hyper = HyperModel(siren, 32, [64])
    opt = torch.optim.Adam([emb, *hyper.parameters()], lr=1e-4)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad()
        loss = (hyper(x, emb) - target).pow(2).mean()
        loss.backward()
        opt.step()
    t_hyper = time.perf_counter() - t0
    with torch.no_grad():
        pred_hyper = hyper(x, emb)
        p_hyper = psnr(pred_hyper, target).mean()

    # the baseline: K SIRENs trained directly, side by side (one batched parameter set each)
    params = {n: torch.nn.Parameter(p) for n, p in siren.init_params((k,)).items()}
    opt = torch.optim.Adam(params.values(), lr=1e-4)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad()
        loss = (siren(x, params) - target).pow(2).mean()
        loss.backward()
        opt.step()
    t_direct = time.perf_counter() - t0
    with torch.no_grad():
        pred_direct = siren(x, params)
        p_direct = psnr(pred_direct, target).mean()
    n_hyper = sum(p.numel() for p in hyper.parameters()) + emb.numel()
    print(
        f"{k} digits, SIREN 2-{args.width}-{args.width}-1 ({siren.layout.numel:,} weights each), "
        f"{args.steps} Adam steps"
    )
    print(f"hypernetwork: PSNR {float(p_hyper):.2f} dB ({n_hyper:,} parameters, {t_hyper:.1f} s)")
    print(
        f"one SIREN per digit: PSNR {float(p_direct):.2f} dB "
        f"({k * siren.layout.numel:,} parameters, {t_direct:.1f} s)"
    )
    if args.figure_dir:
        save_reconstructions(args.figure_dir, target, pred_hyper, pred_direct)
    assert math.isfinite(float(p_hyper))
    print(f"example=siren_mnist metric=psnr_db value={float(p_hyper):.3f}")


if __name__ == "__main__":
    main()
