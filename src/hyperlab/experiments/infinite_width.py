"""Experiments of "On Infinite-Width Hypernetworks" (Littwin, Galanti, Wolf, Yang, NeurIPS 2020).

- ``infinite-width-kernel-convergence`` (Fig. 1): the empirical hyperkernel converges to the
  analytic Θ^h only when both f and g are wide.
- ``infinite-width-taylor-terms`` (Thm 1): K^(r) ~ n^{H-r} for r > H, ~1 otherwise (n: f's
  width, H: g's depth), measured by nested directional derivatives.
- ``infinite-width-representation`` (Table 1): MNIST image representation and inpainting by
  kernel regression (Eq. 18) with the hyperkernel and the hypernetwork NNGP, in the S-weighted
  form (hyperlab's default) and the authors' released form.

- ``infinite-width-dynamics`` (Fig. 2): test accuracy over training of rotation-prediction
  hypernetworks with a fixed wide f, for several widths and depths of g.

The trained "HN" row of Table 1 is a finite hypernetwork trained with ``fit`` on the same
samples (its architecture is ours: the paper's appendix is unavailable).
Notation follows the paper: u = (x, z), x is f's input, z is g's input.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hyperlab.data import load_cifar10, load_mnist, rotation_pair_batch
from hyperlab.data.tasks import MNIST_MEAN, MNIST_STD
from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.hypernet import HyperModel
from hyperlab.kernels import (
    FourierFeatures,
    HyperKernel,
    hyper_ntk,
    kernel_regression,
    taylor_terms,
)
from hyperlab.plots import save_figure
from hyperlab.primary import MLP
from hyperlab.train import TrainConfig, TrainingDiverged, fit

PAPER = "On Infinite-Width Hypernetworks (Littwin, Galanti, Wolf, Yang, NeurIPS 2020)"
DT = torch.float64


def _hypermodel(
    x_dim: int, z_dim: int, f_width: int, f_depth: int, g_width: int, g_depth: int, seed: int
) -> HyperModel:
    """h = g(z; f(x)), both bias-free ReLU MLPs in NTK parameterization (Eq. 2-3), float64."""
    torch.manual_seed(seed)
    g = MLP([z_dim, *[g_width] * (g_depth - 1), 1], "relu", bias=False, parameterization="ntk")
    model = HyperModel(g, x_dim, [f_width] * (f_depth - 1), parameterization="ntk", bias=False).to(
        DT
    )
    return model


def _seed(ctx: RunContext, *parts: object) -> int:
    """A 31-bit seed from the run seed and every one of ``parts``."""
    text = json.dumps([ctx.seed, *[str(p) for p in parts]])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 33


def _gen(ctx: RunContext, *parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(ctx, "gen", *parts))


# ------------------------------------------------------------------------------------------
# Fig. 1: convergence of the empirical hyperkernel
# ------------------------------------------------------------------------------------------


def run_kernel_convergence(ctx: RunContext) -> Result:
    cfg = ctx.config
    thetas = torch.linspace(-math.pi / 2, math.pi / 2, int(cfg["n_thetas"]), dtype=DT)
    x0 = torch.tensor(cfg["x"], dtype=DT)
    z = torch.stack([torch.cos(thetas), torch.sin(thetas)], 1)
    z = torch.cat([torch.tensor([[1.0, 0.0]], dtype=DT), z])  # row 0: the reference z = (1, 0)
    x = x0.expand(z.shape[0], 2)
    probe = int(torch.argmin((thetas - cfg["probe_theta"]).abs())) + 1
    hk = HyperKernel(2, 2, cfg["f_depth"], cfg["g_depth"])
    exact = hk((x[:1], z[:1]), (x, z), get="ntk")[0]
    fw, gw = list(cfg["f_widths"]), list(cfg["g_widths"])
    var = np.zeros((len(fw), len(gw)))
    curves: dict[str, np.ndarray] = {}
    rel_err = np.zeros_like(var)
    med_err = np.zeros_like(var)
    cv = np.zeros_like(var)
    total = len(fw) * len(gw) * cfg["draws"]
    bar = tqdm(total=total, desc="Fig. 1 draws", disable=not ctx.progress)
    for a, n in enumerate(fw):
        for b, m in enumerate(gw):
            rows = []
            for d in range(cfg["draws"]):
                model = _hypermodel(
                    2, 2, n, cfg["f_depth"], m, cfg["g_depth"], _seed(ctx, "fig1", n, m, d)
                )
                k = hyper_ntk(model, (x[:1], z[:1]), (x, z), chunk_size=64)[0]
                rows.append(k.detach())
                bar.update()
            ks = torch.stack(rows)  # (draws, 1 + thetas)
            var[a, b] = float(ks[:, probe].var())
            mean = ks.mean(0)
            rel_err[a, b] = float((mean - exact).abs().max() / exact.abs().max())
            med_err[a, b] = float((ks.median(0).values - exact).abs().max() / exact.abs().max())
            cv[a, b] = float(ks[:, probe].std() / exact[probe].abs())
            curves[f"f={n}, g={m}"] = ks[:, 1:].numpy()
    bar.close()
    figs = [_fig1(ctx, fw, gw, var, thetas, curves, exact[1:])]
    big_f, big_g = len(fw) - 1, len(gw) - 1
    claims = {
        "the kernel's variance is smallest when both f and g are widest": bool(
            var[big_f, big_g] <= var.min() * (1 + 1e-9)
        ),
        "a wide f with a narrow g does not converge (variance above the dually wide one)": bool(
            var[big_f, 0] > 2 * var[big_f, big_g]
        ),
        "a wide g with a narrow f does not converge (variance above the dually wide one)": bool(
            var[0, big_g] > 2 * var[big_f, big_g]
        ),
        "the dually wide empirical kernel matches the analytic hyperkernel (mean within 25%)": bool(
            rel_err[big_f, big_g] < 0.25
        ),
    }
    metrics = {
        "f_widths": fw,
        "g_widths": gw,
        "probe_theta": float(thetas[probe - 1]),
        "variance_of_probe_entry": var.tolist(),
        "coefficient_of_variation_of_probe_entry": cv.tolist(),
        "relative_error_of_mean_curve_vs_analytic": rel_err.tolist(),
        "relative_error_of_median_curve_vs_analytic": med_err.tolist(),
        "analytic_curve": exact[1:].tolist(),
        "thetas": thetas.tolist(),
    }
    comparison = [
        (
            f"var K^h(θ={float(thetas[probe - 1]):.2f}) at f={n}, g={m}",
            "→ 0 only if both wide",
            f"{var[a, b]:.3g}",
        )
        for a, n in enumerate(fw)
        for b, m in enumerate(gw)
    ]
    comparison.append(
        ("mean curve vs analytic Θ^h, widest f and g", "converges", f"{rel_err[-1, -1]:.1%}")
    )
    return Result(
        metrics=metrics,
        claims=claims,
        figures=figs,
        comparison=comparison,
        notes=[
            "x = (1, -1) as in Sec. 5.1 (the caption of Fig. 1 says (1, 0)); z = (1, 0) against "
            "z' = (cos θ, sin θ); empirical kernel by the factorised form of Eq. 12",
            "at finite width the hyperkernel is heavy-tailed (powers of f's empirical NNGP): "
            "variances over few draws are noisy; the median curve is recorded as well",
        ],
    )


def _fig1(ctx, fw, gw, var, thetas, curves, exact) -> str:
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    im = ax1.imshow(np.log10(var), origin="lower", cmap="viridis")
    ax1.set_xticks(range(len(gw)), [str(m) for m in gw])
    ax1.set_yticks(range(len(fw)), [str(n) for n in fw])
    ax1.set_xlabel("width of g")
    ax1.set_ylabel("width of f")
    ax1.set_title("(a) log10 variance of one kernel entry")
    fig.colorbar(im, ax=ax1)
    th = thetas.numpy()
    picks = [(fw[0], gw[-1]), (fw[-1], gw[0]), (fw[-1], gw[-1])]
    for n, m in picks:
        ks = curves[f"f={n}, g={m}"]
        mean, std = ks.mean(0), ks.std(0)
        line = ax2.plot(th, mean, label=f"f={n}, g={m}")[0]
        ax2.fill_between(th, mean - std, mean + std, alpha=0.2, color=line.get_color())
    ax2.plot(th, exact.numpy(), "k--", label="analytic Θ^h")
    ax2.set_xlabel("θ")
    ax2.set_ylabel("K^h(u, u')")
    ax2.set_title("(b) empirical hyperkernel (mean ± std over draws)")
    ax2.legend(fontsize=8)
    path = ctx.figure_path("fig1_kernel_convergence")
    save_figure(fig, path)
    return path.name


_FIG1_FULL: dict[str, Any] = {
    "f_widths": [16, 64, 256, 1024],
    "g_widths": [8, 32, 128],
    "f_depth": 4,
    "g_depth": 4,
    "draws": 100,
    "n_thetas": 33,
    "probe_theta": math.pi / 4,
    "x": [1.0, -1.0],
}

register(
    Experiment(
        name="infinite-width-kernel-convergence",
        paper=PAPER,
        reproduces="Fig. 1",
        summary="Empirical hyperkernel of 4-layer ReLU f and g (NTK parameterization) over "
        "random draws, for a grid of widths of f and g, against the analytic Θ^h of Thm 3.",
        configs={
            "full": _FIG1_FULL,
            "quick": _FIG1_FULL | {"f_widths": [16, 128, 1024], "draws": 20},
            "tiny": _FIG1_FULL
            | {"f_widths": [4, 64], "g_widths": [4, 32], "draws": 4, "n_thetas": 5},
        },
        run=run_kernel_convergence,
        paper_reference={
            "figure": "Fig. 1 (no numbers in the text)",
            "claims": [
                "variance of the kernel converges to zero only when the widths of f and g both "
                "increase",
                "convergence to a deterministic kernel is observed only when both are wide",
            ],
        },
    )
)


# ------------------------------------------------------------------------------------------
# Thm 1: higher-order Taylor terms
# ------------------------------------------------------------------------------------------


def run_taylor_terms(ctx: RunContext) -> Result:
    cfg = ctx.config
    gen = _gen(ctx, "taylor-inputs")
    n_pts = int(cfg["n_points"])
    x = torch.randn(n_pts, cfg["x_dim"], generator=gen, dtype=DT)
    z = torch.randn(n_pts, cfg["z_dim"], generator=gen, dtype=DT)
    orders = [int(r) for r in cfg["orders"]]
    widths = [int(n) for n in cfg["f_widths"]]
    mags: dict[str, list[list[float]]] = {}
    bar = tqdm(
        total=len(cfg["g_depths"]) * len(widths) * cfg["draws"],
        desc="Thm 1 draws",
        disable=not ctx.progress,
    )
    for depth in cfg["g_depths"]:
        table = np.zeros((len(widths), len(orders), cfg["draws"]))
        for a, n in enumerate(widths):
            for d in range(cfg["draws"]):
                model = _hypermodel(
                    cfg["x_dim"],
                    cfg["z_dim"],
                    n,
                    cfg["f_depth"],
                    cfg["g_width"],
                    depth,
                    _seed(ctx, "taylor", depth, n, d),
                )
                k = taylor_terms(model, (z, x), orders)
                for b, r in enumerate(orders):
                    table[a, b, d] = float(k[r].abs().mean())
                bar.update()
        mags[str(depth)] = table.mean(2).tolist()
    bar.close()
    slopes: dict[str, dict[str, float]] = {}
    claims: dict[str, bool] = {}
    logn = np.log(widths)
    tol = float(cfg["slope_tolerance"])
    for depth in cfg["g_depths"]:
        arr = np.array(mags[str(depth)])
        slopes[str(depth)] = {}
        for b, r in enumerate(orders):
            want = depth - r if r > depth else 0
            label = f"H={depth}, r={r}: K^(r) ~ n^{want} (slope within ±{tol})"
            if np.all(arr[:, b] == 0.0):
                # ReLU h is a polynomial of degree (f depth)·H in w on each linear region, so
                # higher derivatives vanish identically: consistent with any decaying rate.
                slopes[str(depth)][str(r)] = -math.inf
                claims[label] = bool(want < 0)
                continue
            slope = float(np.polyfit(logn, np.log(np.maximum(arr[:, b], 1e-300)), 1)[0])
            slopes[str(depth)][str(r)] = slope
            claims[label] = bool(abs(slope - want) <= tol)
    figs = [_taylor_fig(ctx, widths, orders, mags)]
    comparison = [
        (
            f"slope of log|K^({r})| vs log n, H={depth}",
            f"{depth - r if r > depth else 0}",
            _fmt_slope(slopes[str(depth)][str(r)]),
        )
        for depth in cfg["g_depths"]
        for r in orders
    ]
    return Result(
        metrics={"f_widths": widths, "orders": orders, "mean_abs_K": mags, "slopes": slopes},
        claims=claims,
        figures=figs,
        comparison=comparison,
        notes=[
            "K^(r)_ij = d^r/dt^r h_i(w + t∇h_j) at t = 0 by nested jvps, mean |K^(r)_ij| over "
            "input pairs and draws; ReLU nets are piecewise polynomial in w, so Eq. 5 holds "
            "within each linear region and K^(r) = 0 exactly once r exceeds the polynomial's "
            "degree (f's depth times H); such slopes are recorded as null (-inf)",
        ],
    )


def _fmt_slope(slope: float) -> str:
    return "K^(r) = 0 exactly" if slope == -math.inf else f"{slope:+.2f}"


def _taylor_fig(ctx, widths, orders, mags) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(mags), figsize=(4.2 * len(mags), 3.8), squeeze=False)
    for ax, (depth, table) in zip(axes[0], mags.items(), strict=True):
        arr = np.array(table)
        for b, r in enumerate(orders):
            if np.any(arr[:, b] > 0):
                ax.loglog(widths, arr[:, b], marker="o", label=f"r={r}")
        ax.set_title(f"g depth H={depth}")
        ax.set_xlabel("width n of f")
        ax.set_ylabel("mean |K^(r)|")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    path = ctx.figure_path("thm1_taylor_terms")
    save_figure(fig, path)
    return path.name


_TAYLOR_FULL: dict[str, Any] = {
    "f_widths": [64, 128, 256, 512, 1024],
    "f_depth": 3,
    "g_depths": [1, 2, 3],
    "g_width": 8,
    "x_dim": 4,
    "z_dim": 3,
    "orders": [1, 2, 3, 4],
    "n_points": 4,
    "draws": 8,
    "slope_tolerance": 0.35,
}

register(
    Experiment(
        name="infinite-width-taylor-terms",
        paper=PAPER,
        reproduces="Thm 1 (Eq. 5-6)",
        summary="Magnitude of the Taylor terms K^(r) (r = 1..4) of a hypernetwork with wide f and "
        "fixed g, against the width n of f, for depths H of g: slope of log|K^(r)| vs log n.",
        configs={
            "full": _TAYLOR_FULL,
            "quick": _TAYLOR_FULL | {"f_widths": [64, 128, 256, 512], "draws": 4},
            "tiny": _TAYLOR_FULL
            | {"f_widths": [32, 512], "g_depths": [1, 2], "orders": [1, 2, 3], "draws": 3},
        },
        run=run_taylor_terms,
        paper_reference={
            "equation": "Eq. 6: K^(r) ~ n^{H-r} if r > H, 1 otherwise",
            "claims": [
                "the higher-order terms vanish with the width of f only for r > H",
                "for H = 1 (a plain network) K^(r) ~ n^{1-r}",
            ],
        },
    )
)


# ------------------------------------------------------------------------------------------
# Table 1: image representation and inpainting by kernel regression
# ------------------------------------------------------------------------------------------

_TABLE1 = {
    "representation": {
        "HK": [0.055, 0.050, 0.043, 0.032],
        "NNGP": [0.051, 0.045, 0.037, 0.026],
        "HN": [0.12, 0.08, 0.052, 0.041],
    },
    "inpainting": {
        "HK": [0.057, 0.051, 0.047, 0.038],
        "NNGP": [0.054, 0.047, 0.043, 0.034],
        "HN": [0.16, 0.098, 0.066, 0.049],
    },
}
_TABLE1_NS = [50, 100, 200, 500]


def _context(images: torch.Tensor, task: str) -> torch.Tensor:
    """f's input: the (masked) image with unit cosine normalisation (norm √784, Σ⁰ = cos)."""
    x = images.reshape(images.shape[0], -1).to(DT) / 255.0
    if task == "inpainting":
        x = x.clone()
        x[:, 392:] = 0.0  # the released code keeps the first 392 pixels: the top 14 rows
    norm = x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x / norm * math.sqrt(x.shape[1])


def _train_hn(
    ctx: RunContext,
    task: str,
    run: int,
    x_imgs: torch.Tensor,
    pix: torch.Tensor,
    pix_imgs: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    coords: torch.Tensor,
) -> tuple[float, float, bool]:
    """Train one hypernetwork (the "HN" row) and return (test MSE, final train loss, diverged).

    f sees the (masked) image ``x_imgs`` (N, 784), as the kernels' f does; g sees random Fourier
    features of the pixel coordinates with the kernels' lengthscale (so g's input kernel is the
    same RBF the kernels use) and outputs the pixel's intensity. Training samples are exactly the
    kernels' (image, pixel) pairs: ``pix`` (N, P) pixel indices per image, grouped per image so
    that f runs once per image. Test MSE over all 784 pixels of the test images, like the kernels.
    """
    cfg = ctx.config
    n = x_imgs.shape[0]
    key = ("hn", task, n, run)
    gen = _gen(ctx, *key, "init")
    ff = FourierFeatures(
        2, int(cfg["hn_fourier_features"]), lengthscale=float(cfg["lengthscale"]), generator=gen
    )
    feats = ff(coords.float().cpu())  # (784, k), fixed
    width, depth = int(cfg["hn_g_width"]), int(cfg["hn_g_depth"])
    g = MLP([feats.shape[1], *[width] * (depth - 1), 1], "relu")
    x_f = x_imgs.float().cpu()
    hidden = [int(cfg["hn_f_width"])] * (int(cfg["hn_f_depth"]) - 1)
    model = HyperModel(g, 784, hidden, init_cond=x_f, generator=gen)
    data = {
        "cond": x_f,
        "z": feats[pix.cpu()],  # (N, P, k)
        "y": torch.gather(pix_imgs.float().cpu(), 1, pix.cpu()),  # (N, P)
    }

    def loss(m, batch):
        return torch.nn.functional.mse_loss(m(batch["z"], batch["cond"]).squeeze(-1), batch["y"])

    batch = min(int(cfg["hn_batch_images"]), n)
    epochs = max(1, math.ceil(int(cfg["hn_steps"]) * batch / n))
    tc = TrainConfig(
        epochs=epochs,
        batch_size=batch,
        lr=float(cfg["hn_lr"]),
        optimizer="adam",
        seed=_seed(ctx, *key, "train"),
        progress=False,
        desc=f"HN {task} N={n} run {run}",
    )
    try:
        hist = fit(model, loss, data, tc, device=ctx.device)
    except TrainingDiverged:
        return math.nan, math.nan, True
    model.eval()
    err = 0.0
    with torch.no_grad():
        xt, yt = x_test.float().to(ctx.device), y_test.float().to(ctx.device)
        feats = feats.to(ctx.device)
        for t0 in range(0, xt.shape[0], 50):
            t1 = min(t0 + 50, xt.shape[0])
            pred = model(feats.expand(t1 - t0, *feats.shape), xt[t0:t1]).squeeze(-1)
            err += float(((pred - yt[t0:t1]) ** 2).sum())
    mse = err / yt.numel()
    return mse, float(hist.last()["train_loss"]), not math.isfinite(mse)


def run_representation(ctx: RunContext) -> Result:
    cfg = ctx.config
    train_imgs, _ = load_mnist("train", data_dir=ctx.data_dir, download=cfg["download"])
    test_imgs, _ = load_mnist("test", data_dir=ctx.data_dir, download=cfg["download"])
    offset = int(cfg["train_offset"])
    perm = torch.randperm(test_imgs.shape[0], generator=_gen(ctx, "test-perm"))
    test = test_imgs[perm[: cfg["test_images"]]]
    rows, cols = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    coords = torch.stack([cols.reshape(-1), rows.reshape(-1)], 1).to(DT)  # (784, 2) = (col, row)
    dev = ctx.device
    coords = coords.to(dev)
    names = {"HK": "ntk", "NNGP": "nngp"}
    kernels = {
        variant: HyperKernel(
            784,
            2,
            cfg["f_depth"],
            cfg["g_depth"],
            z_kernel="rbf",
            lengthscale=cfg["lengthscale"],
            variant=variant,
        )
        for variant in cfg["variants"]
    }
    mse: dict[str, dict[str, dict[str, list[float]]]] = {}
    hn_runs: dict[str, dict[str, list[float]]] = {}
    hn_train: dict[str, dict[str, list[float]]] = {}
    hn_div: dict[str, dict[str, list[bool]]] = {}
    jitters = []
    bar = tqdm(
        total=len(cfg["tasks"]) * len(cfg["ns"]) * (cfg["avg_terms"] + cfg["hn_runs"]),
        desc="Table 1",
        disable=not ctx.progress,
    )
    for task in cfg["tasks"]:
        x_test = _context(test, task).to(dev)
        y_test = (test.reshape(test.shape[0], -1).to(DT) / 255.0).to(dev)  # (T, 784)
        for n in cfg["ns"]:
            imgs = train_imgs[offset : offset + n]
            x_imgs = _context(imgs, task).to(dev)
            pix_imgs = (imgs.reshape(n, -1).to(DT) / 255.0).to(dev)
            copies = int(cfg["copies"])
            x_train = x_imgs.repeat_interleave(copies, 0)
            preds = {(k, v): torch.zeros_like(y_test) for v in kernels for k in names}
            drawn = []  # every draw's pixels, (n, copies) each: the HN trains on all of them
            for draw in range(cfg["avg_terms"]):
                gen = _gen(ctx, "pixels", task, n, draw)
                pix = torch.randint(0, 784, (n * copies,), generator=gen).to(dev)
                drawn.append(pix.reshape(n, copies))
                z_train = coords[pix]
                rows = torch.arange(n * copies, device=dev)
                y_train = pix_imgs.repeat_interleave(copies, 0)[rows, pix]
                for variant, kern in kernels.items():
                    # both kernels in one pass: they share f's kernels and g's recursion
                    k_train = kern((x_train, z_train), get=("nngp", "ntk"))
                    for t0 in range(0, test.shape[0], cfg["test_chunk"]):
                        t1 = min(t0 + cfg["test_chunk"], test.shape[0])
                        xt = x_test[t0:t1].repeat_interleave(784, 0)
                        zt = coords.repeat(t1 - t0, 1)
                        k_cross = kern((xt, zt), (x_train, z_train), get=("nngp", "ntk"))
                        for name, get in names.items():
                            res = kernel_regression(
                                k_train[get],
                                y_train,
                                k_cross[get],
                                eps=cfg["eps"],
                                ridge=cfg["ridge"],
                                jitter="auto",
                            )
                            jitters.append(res.jitter)
                            pred = res.mean.reshape(t1 - t0, 784) / cfg["avg_terms"]
                            preds[(name, variant)][t0:t1] += pred
                bar.update()
            for (name, variant), pred in preds.items():
                err = float(((pred - y_test) ** 2).mean())
                mse.setdefault(variant, {}).setdefault(task, {}).setdefault(name, []).append(err)
            hn_pix = torch.cat(drawn, 1)
            for run in range(int(cfg["hn_runs"])):
                err, train_loss, diverged = _train_hn(
                    ctx, task, run, x_imgs, hn_pix, pix_imgs, x_test, y_test, coords
                )
                hn_runs.setdefault(task, {}).setdefault(str(n), []).append(err)
                hn_train.setdefault(task, {}).setdefault(str(n), []).append(train_loss)
                hn_div.setdefault(task, {}).setdefault(str(n), []).append(diverged)
                bar.update()
    bar.close()
    main_variant = cfg["variants"][0]
    tables: dict[str, dict[str, Any]] = {}
    for task in cfg["tasks"]:
        runs = [hn_runs[task][str(n)] for n in cfg["ns"]]
        tables[task] = {
            "n_train": list(cfg["ns"]),
            "kernel_variant": main_variant,
            "hyperkernel_mse": mse[main_variant][task]["HK"],
            "nngp_mse": mse[main_variant][task]["NNGP"],
            "hypernetwork_mse": [_nanmean(r) for r in runs],
            "hypernetwork_mse_std": [_nanstd(r) for r in runs],
            "hypernetwork_mse_runs": runs,
            "hypernetwork_train_mse": [_nanmean(hn_train[task][str(n)]) for n in cfg["ns"]],
            "hypernetwork_diverged": [hn_div[task][str(n)] for n in cfg["ns"]],
            "paper": {
                "n_train": _TABLE1_NS,
                "hyperkernel_mse": _TABLE1[task]["HK"],
                "nngp_mse": _TABLE1[task]["NNGP"],
                "hypernetwork_mse": _TABLE1[task]["HN"],
            },
        }
    comparison = []
    claims = {}
    for variant, by_task in mse.items():
        for task, by_kernel in by_task.items():
            for name, values in by_kernel.items():
                for n, v in zip(cfg["ns"], values, strict=True):
                    ref = _TABLE1[task][name][_TABLE1_NS.index(n)] if n in _TABLE1_NS else None
                    comparison.append(
                        (
                            f"{task} {name} ({variant}) N={n}",
                            "-" if ref is None else f"{ref}",
                            f"{v:.4f}",
                        )
                    )
            hk, gp = by_kernel["HK"], by_kernel["NNGP"]
            claims[f"{task} ({variant}): NNGP beats the hyperkernel at every N"] = bool(
                all(b < a for a, b in zip(hk, gp, strict=True))
            )
            if len(cfg["ns"]) > 1:
                claims[f"{task} ({variant}): MSE falls as N grows (both kernels)"] = bool(
                    all(np.all(np.diff(v) < 0) for v in (hk, gp))
                )
    for task, tab in tables.items():
        for i, n in enumerate(cfg["ns"]):
            ref = _TABLE1[task]["HN"][_TABLE1_NS.index(n)] if n in _TABLE1_NS else None
            paper = "-" if ref is None else f"{ref}"
            if task == "inpainting" and n == 500:
                paper += " (printed 0.49)"
            comparison.append(
                (
                    f"{task} HN (trained, {cfg['hn_runs']} runs) N={n}",
                    paper,
                    f"{tab['hypernetwork_mse'][i]:.4f} ± {tab['hypernetwork_mse_std'][i]:.4f}",
                )
            )
        hk, gp, hn = tab["hyperkernel_mse"], tab["nngp_mse"], tab["hypernetwork_mse"]
        # NaN (every HN run diverged) compares False: the claims then fail, never hold by default
        claims[f"{task}: at the smallest N both kernels ({main_variant}) beat the trained HN"] = (
            bool(hk[0] < hn[0] and gp[0] < hn[0])
        )
        claims[f"{task}: the NNGP beats the trained HN at every N"] = bool(
            all(b < c for b, c in zip(gp, hn, strict=True))
        )
        if len(cfg["ns"]) > 1:
            claims[f"{task}: the trained HN's MSE falls as N grows"] = bool(np.all(np.diff(hn) < 0))
            claims[f"{task}: HK, NNGP ({main_variant}) and the trained HN all improve with N"] = (
                bool(all(np.all(np.diff(v) < 0) for v in (hk, gp, hn)))
            )
    fig = _table1_fig(ctx, cfg["ns"], mse, tables)
    metrics = {"ns": cfg["ns"], "mse": mse, "max_jitter": max(jitters) if jitters else 0.0}
    metrics.update(tables)
    hn_desc = (
        f"f: {cfg['hn_f_depth']} linear layers ({cfg['hn_f_depth'] - 1} hidden of width "
        f"{cfg['hn_f_width']}, ReLU) on the same (masked, normalised) image the kernels' f sees; "
        f"g: {cfg['hn_g_depth']} layers of width {cfg['hn_g_width']} with biases on "
        f"{cfg['hn_fourier_features']} random Fourier features of the raw pixel coordinates "
        f"(lengthscale {cfg['lengthscale']:.3g}, i.e. the kernels' input kernel "
        "exp(-‖p - p'‖²/4)); standard parameterization, hyperfan-in init calibrated on the "
        f"training images; Adam lr {cfg['hn_lr']}, batches of {cfg['hn_batch_images']} images "
        f"(f runs once per image), about {cfg['hn_steps']} steps, MSE loss, no early stopping"
    )
    return Result(
        metrics=metrics,
        claims=claims,
        figures=[fig],
        comparison=comparison,
        notes=[
            "protocol of the released code (notes B.2): N training images, each tiled "
            f"{cfg['copies']} times with one random pixel per copy, predictions averaged over "
            f"{cfg['avg_terms']} pixel draws; g's input kernel exp(-‖p - p'‖²/4) on raw pixel "
            "coordinates; f's input the unit-normalised (masked) image",
            "'s_weighted' is hyperlab's default (Monte Carlo confirmed); 'released' drops the "
            "S factors as the authors' code does",
            "HN row (the paper's widths/optimizer are unknown, notes B.7): " + hn_desc + "; "
            "it trains on exactly the kernels' (image, pixel) samples: the union of the "
            f"{cfg['avg_terms']} draws, {cfg['copies'] * cfg['avg_terms']} pixels per image; test "
            f"MSE over all 784 pixels of the same {cfg['test_images']} test images; mean ± std "
            f"over {cfg['hn_runs']} runs (the paper: 20); a diverged run is recorded as NaN "
            "and left out of the mean",
            "the paper's HN inpainting entry at N=500 is printed '0.49'; it is almost surely "
            "0.049 (it must lie below 0.066 to fit the row's trend), and is used as such",
            f"metrics[task] holds Table 1 in one place: n_train, hyperkernel_mse and nngp_mse "
            f"({main_variant} kernels), hypernetwork_mse (± std), and the paper's row",
        ],
    )


def _table1_fig(ctx, ns, mse, tables) -> str:
    import matplotlib.pyplot as plt

    tasks = sorted({t for v in mse.values() for t in v})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for variant, by_task in mse.items():
            for name, values in by_task[task].items():
                ax.plot(ns, values, marker="o", label=f"{name} ({variant})")
        tab = tables[task]
        ax.errorbar(
            ns,
            tab["hypernetwork_mse"],
            yerr=tab["hypernetwork_mse_std"],
            marker="s",
            capsize=2,
            label="HN (trained)",
        )
        for name in ("HK", "NNGP", "HN"):
            ax.plot(_TABLE1_NS, _TABLE1[task][name], "k:", marker="x", alpha=0.5)
        ax.set_xscale("log")
        ticks = sorted(set(ns) | set(_TABLE1_NS))
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel("N (training images)")
        ax.set_ylabel("test MSE")
        ax.set_title(f"{task} (dotted: paper)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    path = ctx.figure_path("table1_representation")
    save_figure(fig, path)
    return path.name


_TABLE1_FULL: dict[str, Any] = {
    "ns": _TABLE1_NS,
    "tasks": ["representation", "inpainting"],
    "variants": ["s_weighted", "released"],
    "copies": 20,
    "avg_terms": 5,
    "test_images": 100,
    "test_chunk": 4,
    "train_offset": 5000,
    "f_depth": 3,
    "g_depth": 3,
    "lengthscale": math.sqrt(2.0),
    "eps": 1e-3,
    "ridge": "identity",
    "download": False,
    # the trained HN row (Table 1's "HN"); the paper's architecture is unknown (notes B.7)
    "hn_runs": 5,
    "hn_f_depth": 3,
    "hn_f_width": 256,
    "hn_g_depth": 3,
    "hn_g_width": 32,
    "hn_fourier_features": 128,
    "hn_lr": 1e-3,
    "hn_batch_images": 10,
    "hn_steps": 1000,
}

register(
    Experiment(
        name="infinite-width-representation",
        paper=PAPER,
        reproduces="Table 1 (HK, NNGP and HN rows)",
        summary="MNIST image representation and inpainting by kernel regression (Eq. 18) with the "
        "hyperkernel and the hypernetwork NNGP, N training images x 20 random pixels, against a "
        "trained hypernetwork (HN) on the same samples.",
        configs={
            "full": _TABLE1_FULL,
            "quick": _TABLE1_FULL
            | {
                "ns": [50, 100],
                "avg_terms": 2,
                "test_images": 10,
                "hn_runs": 3,
                "hn_f_width": 128,
                "hn_fourier_features": 64,
                "hn_steps": 500,
            },
            "tiny": _TABLE1_FULL
            | {
                "ns": [3, 6],
                "copies": 4,
                "avg_terms": 1,
                "test_images": 2,
                "test_chunk": 1,
                "hn_runs": 2,
                "hn_f_width": 16,
                "hn_g_width": 8,
                "hn_fourier_features": 16,
                "hn_steps": 40,
            },
        },
        run=run_representation,
        paper_reference={
            "table": _TABLE1,
            "ns": _TABLE1_NS,
            "claims": [
                "in the low-data regime the kernels outperform a trained hypernetwork",
                "the NNGP consistently outperforms the hyperkernel",
                "every method (HK, NNGP, HN) improves as N grows (Table 1's rows)",
            ],
            "note": "the HN inpainting value '0.49' at N=500 is read as 0.049 (notes B.5)",
        },
    )
)


# ------------------------------------------------------------------------------------------
# Fig. 2: training dynamics vs width and depth of g (rotation prediction)
# ------------------------------------------------------------------------------------------


def _rotation_data(ctx: RunContext, split: str, n: int) -> torch.Tensor:
    cfg = ctx.config
    if cfg["dataset"] == "cifar10":
        images, _ = load_cifar10(split, data_dir=ctx.data_dir, download=cfg["download"])
    else:
        images, _ = load_mnist(split, data_dir=ctx.data_dir, download=cfg["download"])
    idx = torch.randperm(images.shape[0], generator=_gen(ctx, "subset", split))[:n]
    return images[idx]


def run_dynamics(ctx: RunContext) -> Result:
    cfg = ctx.config
    cifar = cfg["dataset"] == "cifar10"
    norm = (
        {"mean": (0.5,) * 3, "std": (0.5,) * 3} if cifar else {"mean": MNIST_MEAN, "std": MNIST_STD}
    )
    train = _rotation_data(ctx, "train", cfg["n_train"])
    test_imgs = _rotation_data(ctx, "test", cfg["n_test"])
    test = rotation_pair_batch(test_imgs, _gen(ctx, "test-angles"), **norm)
    d = test["x"].shape[1]

    def transform(batch, gen):
        out = rotation_pair_batch(batch["image"], gen, **norm)
        return {k: out[k] for k in ("x", "cond", "y")}

    def loss(model, batch):
        return torch.nn.functional.cross_entropy(model(batch["x"], batch["cond"]), batch["y"])

    @torch.no_grad()
    def evaluate(model):
        correct = 0
        for i in range(0, test["y"].shape[0], 1000):
            logits = model(test["x"][i : i + 1000], test["cond"][i : i + 1000])
            correct += int((logits.argmax(-1) == test["y"][i : i + 1000]).sum())
        return {"accuracy": correct / test["y"].shape[0]}

    acc: dict[str, dict[str, list[list[float]]]] = {}
    diverged: dict[str, dict[str, list[int | None]]] = {}
    bar = tqdm(
        total=len(cfg["g_depths"]) * len(cfg["g_widths"]) * cfg["seeds"],
        desc="Fig. 2 runs",
        disable=not ctx.progress,
    )
    for depth in cfg["g_depths"]:
        for width in cfg["g_widths"]:
            runs, div = [], []
            for seed in range(cfg["seeds"]):
                key = ("fig2", cfg["dataset"], depth, width, seed)
                torch.manual_seed(_seed(ctx, *key, "init"))
                g = MLP([d, *[width] * (depth - 1), 12], "relu", bias=False)
                model = HyperModel(g, d, [cfg["f_width"]] * (cfg["f_depth"] - 1))
                first = evaluate(model.eval())["accuracy"]
                model.train()
                seen: list[float] = []  # accuracies of finished epochs, kept if a later one fails

                def record(m, seen=seen):
                    out = evaluate(m)
                    seen.append(out["accuracy"])
                    return out

                tc = TrainConfig(
                    epochs=int(cfg["epochs"]),
                    batch_size=int(cfg["batch_size"]),
                    lr=float(cfg["lr"]),
                    optimizer=cfg["optimizer"],
                    momentum=float(cfg["momentum"]),
                    seed=_seed(ctx, *key, "train"),
                    progress=False,
                    desc=f"g{depth}x{width}s{seed}",
                )
                try:
                    hist = fit(
                        model,
                        loss,
                        {"image": train},
                        tc,
                        evaluate=record,
                        transform=transform,
                        checkpoint_dir=ctx.checkpoint_dir(*key),
                    )
                    curve = [first, *hist.series("accuracy")]
                    div.append(None)
                except TrainingDiverged as err:
                    # the epochs evaluated before the divergence are kept, the rest are NaN
                    curve = [first, *seen][: err.epoch]
                    curve += [math.nan] * (int(cfg["epochs"]) + 1 - len(curve))
                    div.append(int(err.epoch))
                runs.append(curve)
                bar.update()
            acc.setdefault(str(depth), {})[str(width)] = runs
            diverged.setdefault(str(depth), {})[str(width)] = div
    bar.close()

    def per_setting(stat) -> dict[str, dict[str, float]]:
        return {
            dep: {w: _nanmean([stat(r) for r in runs]) for w, runs in by_w.items()}
            for dep, by_w in acc.items()
        }

    final = per_setting(lambda r: r[-1])
    initial = per_setting(lambda r: r[0])
    first_epoch = per_setting(lambda r: r[1])
    # mean accuracy over the training epochs: the area under the curve ("trains faster");
    # NaN for a run that diverged
    mean_curve = per_setting(lambda r: float(np.mean(r[1:])))
    widths = [str(w) for w in cfg["g_widths"]]
    depths = [str(h) for h in cfg["g_depths"]]
    chance = 1.0 / 12.0
    n_div = {
        dep: {w: sum(e is not None for e in v) for w, v in by.items()}
        for dep, by in diverged.items()
    }

    def beats(a: float, b: float) -> bool:
        # a setting all of whose runs diverged (NaN) did not train: it ranks below any finite one
        a = a if math.isfinite(a) else -math.inf
        b = b if math.isfinite(b) else -math.inf
        return bool(a > b)

    claims = {}
    for dep in depths:
        claims[f"g depth {dep}: the widest g ends more accurate than the narrowest"] = beats(
            final[dep][widths[-1]], final[dep][widths[0]]
        )
        claims[f"g depth {dep}: the widest g is more accurate than the narrowest after epoch 1"] = (
            beats(first_epoch[dep][widths[-1]], first_epoch[dep][widths[0]])
        )
    if len(depths) > 1:
        claims["at the widest g, the shallowest g ends more accurate than the deepest"] = beats(
            final[depths[0]][widths[-1]], final[depths[-1]][widths[-1]]
        )
        claims["at every width, the shallowest g ends more accurate than the deepest"] = all(
            beats(final[depths[0]][w], final[depths[-1]][w]) for w in widths
        )
        claims[
            "at every width, the shallowest g trains faster (higher accuracy averaged over the "
            "epochs) than the deepest"
        ] = all(beats(mean_curve[depths[0]][w], mean_curve[depths[-1]][w]) for w in widths)
    if len(depths) > 1 and len(widths) > 1:
        claims[
            "Fig. 2: a wider and shallower g trains faster and reaches higher test accuracy "
            "(widest beats narrowest at every depth, at epoch 1 and at the end; shallowest beats "
            "deepest at every width, averaged over epochs and at the end)"
        ] = all(claims.values())
    fig = _dynamics_fig(ctx, acc, cfg)
    comparison = [
        (
            f"final test accuracy, g depth {dep}, width {w}",
            "grows with width, falls with depth",
            f"{final[dep][w]:.3f}"
            + (f" ({n_div[dep][w]}/{cfg['seeds']} diverged)" if n_div[dep][w] else ""),
        )
        for dep in depths
        for w in widths
    ]
    best = max((v for by in final.values() for v in by.values() if math.isfinite(v)), default=0.0)
    comparison.append(("best final test accuracy (chance 1/12 = 0.083)", "-", f"{best:.3f}"))
    opt = cfg["optimizer"]
    opt_desc = (
        "SGD without momentum, as the paper"
        if opt == "sgd" and not cfg["momentum"]
        else f"{opt} (momentum {cfg['momentum']}), not the paper's plain SGD"
    )
    return Result(
        metrics={
            "accuracy": acc,
            "final_accuracy": final,
            "initial_accuracy": initial,
            "first_epoch_accuracy": first_epoch,
            "mean_accuracy_over_epochs": mean_curve,
            "diverged_at_epoch": diverged,
            "diverged_runs": n_div,
            "chance": chance,
            "best_final_accuracy": best,
            "learned_above_chance": bool(best > 2 * chance),
        },
        claims=claims,
        figures=[fig],
        comparison=comparison,
        notes=[
            "f: ReLU MLP of depth 4, width 200 (Sec. 5.2); g: bias-free ReLU MLP; standard "
            "parameterization with hyperfan-in init (the released code used PyTorch's default "
            f"init); {opt_desc}, lr {cfg['lr']}, batch {cfg['batch_size']}, {cfg['epochs']} "
            f"epochs on {cfg['n_train']} images (new angles every epoch); labels: nearest "
            "multiple of 30 degrees of the relative angle a2 (notes B.4)",
            f"{cfg['seeds']} seeds per setting (the paper: 100); a diverged run (non-finite "
            "loss) keeps the accuracies of the epochs before it, NaN after, and its epoch is in "
            "diverged_at_epoch (null: did not diverge); means leave NaN out; in the claims a "
            "setting whose every run diverged ranks below any that trained",
        ],
    )


def _nanmean(values: list[float]) -> float:
    """Mean over the runs that did not diverge (NaN if all did)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _nanstd(values: list[float]) -> float:
    """Standard deviation over the runs that did not diverge (NaN if all did; 0 for one)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.std(finite)) if finite else math.nan


def _dynamics_fig(ctx, acc, cfg) -> str:
    import matplotlib.pyplot as plt

    depths = list(acc)
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.6), squeeze=False)
    for ax, dep in zip(axes[0], depths, strict=True):
        for w, runs in acc[dep].items():
            arr = np.array(runs, dtype=float)
            with warnings.catch_warnings():  # all-diverged settings give NaN curves, quietly
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(arr, 0), np.nanstd(arr, 0)
            ep = np.arange(arr.shape[1])
            ax.errorbar(ep, mean, yerr=std, capsize=2, label=f"width {w}")
        ax.set_title(f"{cfg['dataset']}, g depth {dep}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    path = ctx.figure_path(f"fig2_dynamics_{cfg['dataset']}")
    save_figure(fig, path)
    return path.name


_FIG2_FULL: dict[str, Any] = {
    "dataset": "mnist",
    "g_depths": [3, 6, 8],
    "g_widths": [10, 50, 100],
    "f_depth": 4,
    "f_width": 200,
    "n_train": 10_000,
    "n_test": 10_000,
    "epochs": 100,
    "batch_size": 100,
    "lr": 0.01,
    "optimizer": "sgd",
    "momentum": 0.0,
    "seeds": 5,
    "download": False,
}

register(
    Experiment(
        name="infinite-width-dynamics",
        paper=PAPER,
        reproduces="Fig. 2",
        summary="Test accuracy over training of rotation-prediction hypernetworks (f: depth 4, "
        "width 200) for g of depth 3/6/8 and several widths (MNIST; --set dataset=cifar10 "
        "g_widths=[100,200,300] for the CIFAR row).",
        configs={
            "full": _FIG2_FULL,
            # quick: plain SGD at lr 0.01 stays near chance for the few hundred steps a CPU
            # affords (and diverges at depth 8); Adam learns well above chance in 6 epochs
            # (at lr 1e-3 a width-10 g collapses to a constant output; 3e-4 keeps it learning)
            "quick": _FIG2_FULL
            | {
                "g_depths": [3, 8],
                "n_train": 2000,
                "n_test": 1000,
                "epochs": 6,
                "seeds": 2,
                "optimizer": "adam",
                "lr": 3e-4,
            },
            "tiny": _FIG2_FULL
            | {
                "g_depths": [3, 6],
                "g_widths": [10, 50],
                "f_width": 32,
                "n_train": 200,
                "n_test": 200,
                "epochs": 1,
                "seeds": 1,
            },
        },
        run=run_dynamics,
        paper_reference={
            "figure": "Fig. 2 (no numbers in the text; 100 runs per curve)",
            "claims": [
                "a wider g trains faster and reaches higher test accuracy, especially at "
                "initialization",
                "with f wide and fixed, a deeper g trains slower and ends lower",
            ],
        },
    )
)
