"""Thm 1 (Eq. 5-6): magnitude of the Taylor terms K^(r) of a hypernetwork with wide f.

K^(r)_ij = d^r/dt^r h_i(w + t∇h_j) at t = 0 by nested jvps, for r = 1..4 and g of depth H;
Eq. 6 predicts K^(r) ~ n^{H-r} for r > H and ~1 otherwise (n: f's width). We fit the slope of
log mean|K^(r)| against log n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.experiments.claims import Claim
from hyperlab.experiments.config import Config, param
from hyperlab.experiments.infinite_width.common import DT, ntk_hypermodel
from hyperlab.experiments.papers import INFINITE_WIDTH
from hyperlab.kernels import taylor_terms
from hyperlab.plots import plt, save_figure

PAPER_REF = "Thm 1, Eq. 6"


@dataclass(frozen=True)
class TaylorTermsConfig(Config):
    """Thm 1: widths of f, depths H of g, orders r, draws and the slope tolerance."""

    f_widths: list[int] = param([64, 128, 256, 512, 1024], "widths n of f", min=1)
    f_depth: int = param(3, "layers of f", min=2)
    g_depths: list[int] = param([1, 2, 3], "depths H of g", min=1)
    g_width: int = param(8, "width of g", min=1)
    x_dim: int = param(4, "dimension of f's input x", min=1)
    z_dim: int = param(3, "dimension of g's input z", min=1)
    orders: list[int] = param([1, 2, 3, 4], "orders r of the Taylor terms", min=1)
    n_points: int = param(4, "input points (K^(r) is n_points x n_points)", min=1)
    draws: int = param(8, "random initialisations per width", min=1)
    slope_tolerance: float = param(0.35, "a slope within ± this of Eq. 6's holds", positive=True)


def compute(ctx: RunContext) -> dict[str, list[list[float]]]:
    """mean |K^(r)| over input pairs and draws, [depth][width][order]."""
    cfg = ctx.config
    gen = ctx.generator("taylor-inputs")
    x = torch.randn(cfg.n_points, cfg.x_dim, generator=gen, dtype=DT)
    z = torch.randn(cfg.n_points, cfg.z_dim, generator=gen, dtype=DT)
    orders, widths = list(cfg.orders), list(cfg.f_widths)
    mags: dict[str, list[list[float]]] = {}
    bar = tqdm(total=len(cfg.g_depths) * len(widths) * cfg.draws, desc="Thm 1 draws",
               disable=not ctx.progress)  # fmt: skip
    for depth in cfg.g_depths:
        table = np.zeros((len(widths), len(orders), cfg.draws))
        for a, n in enumerate(widths):
            for d in range(cfg.draws):
                g = ctx.generator("taylor", depth, n, d)
                model = ntk_hypermodel(cfg.x_dim, cfg.z_dim, n, cfg.f_depth, cfg.g_width, depth, g)
                k = taylor_terms(model, x=x, z=z, orders=orders)
                for b, r in enumerate(orders):
                    table[a, b, d] = float(k[r].abs().mean())
                bar.update()
        mags[str(depth)] = table.mean(2).tolist()
    bar.close()
    return mags


def _fmt_slope(slope: float) -> str:
    return "K^(r) = 0 exactly" if slope == -math.inf else f"{slope:+.2f}"


def summarise(ctx: RunContext, mags: dict[str, list[list[float]]]) -> Result:
    """Slope of log|K^(r)| vs log n per (H, r) against Eq. 6; a claim per pair."""
    cfg = ctx.config
    widths, orders = list(cfg.f_widths), list(cfg.orders)
    logn = np.log(widths)
    tol = cfg.slope_tolerance
    slopes: dict[str, dict[str, float]] = {}
    claims: list[Claim] = []
    for depth in cfg.g_depths:
        arr = np.array(mags[str(depth)])
        slopes[str(depth)] = {}
        for b, r in enumerate(orders):
            want = depth - r if r > depth else 0
            label = f"H={depth}, r={r}: K^(r) ~ n^{want} (slope within ±{tol})"
            if np.all(arr[:, b] == 0.0):
                # ReLU h is a polynomial of degree (f depth)·H in w on each linear region, so
                # higher derivatives vanish identically: consistent with any decaying rate.
                slopes[str(depth)][str(r)] = -math.inf
                claims.append(
                    Claim(
                        label,
                        PAPER_REF,
                        want < 0,
                        {"predicted_slope": want, "K_r": "identically 0"},
                    )
                )
                continue
            slope = float(np.polyfit(logn, np.log(np.maximum(arr[:, b], 1e-300)), 1)[0])
            slopes[str(depth)][str(r)] = slope
            claims.append(Claim(label, PAPER_REF, abs(slope - want) <= tol,
                                {"predicted_slope": want, "measured_slope": slope,
                                 "mean_abs_K_per_width": arr[:, b].tolist()}))  # fmt: skip
    comparison = [
        (f"slope of log|K^({r})| vs log n, H={depth}", f"{depth - r if r > depth else 0}",
         _fmt_slope(slopes[str(depth)][str(r)]))
        for depth in cfg.g_depths
        for r in orders
    ]  # fmt: skip
    notes = [
        "K^(r)_ij = d^r/dt^r h_i(w + t∇h_j) at t = 0 by nested jvps, mean |K^(r)_ij| over "
        "input pairs and draws; ReLU nets are piecewise polynomial in w, so Eq. 5 holds "
        "within each linear region and K^(r) = 0 exactly once r exceeds the polynomial's "
        "degree (f's depth times H); such slopes are recorded as null (-inf)",
    ]
    metrics = {"f_widths": widths, "orders": orders, "mean_abs_K": mags, "slopes": slopes}
    return Result(metrics=metrics, claims=claims, comparison=comparison, notes=notes)


def figure(ctx: RunContext, metrics: dict[str, Any]) -> str:
    """mean |K^(r)| against n on log-log axes, one panel per depth H of g."""
    widths, orders, mags = metrics["f_widths"], metrics["orders"], metrics["mean_abs_K"]
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
    return save_figure(fig, ctx.figure_path("thm1_taylor_terms")).name


def run(ctx: RunContext) -> Result:
    """compute → summarise → figure."""
    result = summarise(ctx, compute(ctx))
    result.figures = [figure(ctx, result.metrics)]
    return result


register(
    Experiment(
        name="infinite-width-taylor-terms",
        paper=INFINITE_WIDTH,
        reproduces="Thm 1 (Eq. 5-6)",
        summary="Magnitude of the Taylor terms K^(r) (r = 1..4) of a hypernetwork with wide f and "
        "fixed g, against the width n of f, for depths H of g: slope of log|K^(r)| vs log n.",
        config_class=TaylorTermsConfig,
        presets={
            "full": {},
            "quick": {"f_widths": [64, 128, 256, 512], "draws": 4},
            "tiny": {"f_widths": [32, 512], "g_depths": [1, 2], "orders": [1, 2, 3], "draws": 3},
        },
        run=run,
        paper_reference={
            "equation": "Eq. 6: K^(r) ~ n^{H-r} if r > H, 1 otherwise",
            "claims": [
                "the higher-order terms vanish with the width of f only for r > H",
                "for H = 1 (a plain network) K^(r) ~ n^{1-r}",
            ],
        },
    )
)
