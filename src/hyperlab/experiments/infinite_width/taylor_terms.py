"""Thm 1 (Eq. 5-6): magnitude of the Taylor terms K^(r) of a hypernetwork with wide f.

K^(r)_ij = d^r/dt^r h_i(w + t∇h_j) at t = 0 by nested jvps, for r = 1..4 and g of depth H;
Eq. 6 predicts K^(r) ~ n^{H-r} for r > H and ~1 otherwise (n: f's width). |K^(r)| is heavy-tailed
over initialisations, so the statistic is the mean over draws of log mean_ij |K^(r)_ij| (its
median is recorded too), the slope is fitted on the widest widths only (n >= fit_min_width,
past the pre-asymptotic regime), and each slope carries a bootstrap interval over draws.
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
from hyperlab.experiments.config import Config, ConfigError, param
from hyperlab.experiments.infinite_width.common import DT, ntk_hypermodel
from hyperlab.experiments.papers import INFINITE_WIDTH
from hyperlab.experiments.scale import sizes_of
from hyperlab.kernels import taylor_terms
from hyperlab.plots import plt

PAPER_REF = "Thm 1, Eq. 6"


@dataclass(frozen=True)
class TaylorTermsConfig(Config):
    """Thm 1: widths of f, depths H of g, orders r, draws and the slope statistics."""

    f_widths: list[int] = param([64, 128, 256, 512, 1024, 2048, 4096], "widths n of f", min=1)
    f_depth: int = param(3, "layers of f", min=2)
    g_depths: list[int] = param([1, 2, 3], "depths H of g", min=1)
    g_width: int = param(8, "width of g", min=1)
    x_dim: int = param(4, "dimension of f's input x", min=1)
    z_dim: int = param(3, "dimension of g's input z", min=1)
    orders: list[int] = param([1, 2, 3, 4], "orders r of the Taylor terms", min=1)
    n_points: int = param(4, "input points (K^(r) is n_points x n_points)", min=1)
    draws: int = param(32, "random initialisations per width", min=2)
    fit_min_width: int = param(256, "the slope is fitted on the widths n >= this", min=1)
    bootstrap: int = param(1000, "bootstrap resamples of the draws for each slope's interval",
                           min=10)  # fmt: skip
    slope_tolerance: float = param(0.2, "a slope within ± this of Eq. 6's holds", positive=True)

    def validate(self) -> None:
        if sum(n >= self.fit_min_width for n in self.f_widths) < 2:
            raise ConfigError(
                f"fit_min_width: {self.fit_min_width} leaves fewer than two of f_widths "
                f"{self.f_widths} to fit a slope on"
            )


def compute(ctx: RunContext[TaylorTermsConfig]) -> dict[str, list]:
    """mean_ij |K^(r)_ij| per draw: ``{H: [width][order][draw]}``."""
    cfg = ctx.config
    gen = ctx.generator("taylor-inputs")
    x = torch.randn(cfg.n_points, cfg.x_dim, generator=gen, dtype=DT)
    z = torch.randn(cfg.n_points, cfg.z_dim, generator=gen, dtype=DT)
    orders, widths = list(cfg.orders), list(cfg.f_widths)
    per_draw: dict[str, list] = {}
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
        per_draw[str(depth)] = table.tolist()
    bar.close()
    return per_draw


def _fmt_slope(slope: float, lo: float = math.nan, hi: float = math.nan) -> str:
    if slope == -math.inf:
        return "K^(r) = 0 exactly"
    return f"{slope:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else "")


def _slopes(logn: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of the rows of ``y`` (..., W) against ``logn`` (W,)."""
    xc = logn - logn.mean()
    return ((y - y.mean(-1, keepdims=True)) * xc).sum(-1) / (xc * xc).sum()


def summarise(ctx: RunContext[TaylorTermsConfig], per_draw: dict[str, list]) -> Result:
    """Slopes of mean log|K^(r)| vs log n on the widest widths, with bootstrap intervals."""
    cfg = ctx.config
    widths, orders = np.array(cfg.f_widths), list(cfg.orders)
    fit = widths >= cfg.fit_min_width
    logn = np.log(widths[fit])
    rng = np.random.default_rng(ctx.seed_for("bootstrap"))
    stats: dict[str, dict[str, Any]] = {}
    for depth in cfg.g_depths:
        arr = np.array(per_draw[str(depth)])  # (W, R, D)
        stats[str(depth)] = {}
        for b, r in enumerate(orders):
            want = depth - r if r > depth else 0
            vals = arr[:, b, :]
            if np.all(vals == 0.0):
                # ReLU h is a polynomial of degree (f depth)·H in w on each linear region, so
                # higher derivatives vanish identically: consistent with any decaying rate.
                stats[str(depth)][str(r)] = {"slope": -math.inf, "predicted": want,
                                             "identically_zero": True}  # fmt: skip
                continue
            logs = np.log(np.maximum(vals, 1e-300))  # (W, D)
            mean_log, median_log = logs.mean(1), np.median(logs, 1)
            slope = float(_slopes(logn, mean_log[fit]))
            idx = rng.integers(0, logs.shape[1], (cfg.bootstrap, int(fit.sum()), logs.shape[1]))
            boot = np.take_along_axis(logs[fit][None].repeat(cfg.bootstrap, 0), idx, 2).mean(2)
            lo, hi = (float(v) for v in np.percentile(_slopes(logn, boot), [2.5, 97.5]))
            st = {"slope": slope, "interval_95": [lo, hi], "predicted": want,
                  "slope_of_median": float(_slopes(logn, median_log[fit])),
                  "mean_log_abs_K": mean_log.tolist(), "median_log_abs_K": median_log.tolist(),
                  "std_log_abs_K": logs.std(1).tolist()}  # fmt: skip
            stats[str(depth)][str(r)] = st
    comparison = [
        (f"slope of mean log|K^({r})| vs log n, H={depth}", str(st["predicted"]),
         _fmt_slope(st["slope"], *st.get("interval_95", [math.nan, math.nan])))
        for depth in cfg.g_depths
        for r, st in stats[str(depth)].items()
    ]  # fmt: skip
    notes = [
        "K^(r)_ij = d^r/dt^r h_i(w + t∇h_j) at t = 0 by nested jvps; per draw the mean of "
        f"|K^(r)_ij| over input pairs; statistic: the mean over {cfg.draws} draws of its log "
        f"(median recorded too); slope fitted on n >= {cfg.fit_min_width} "
        f"({widths[fit].tolist()}); 95% interval from {cfg.bootstrap} bootstrap resamples of "
        "the draws at each width",
        "ReLU nets are piecewise polynomial in w, so Eq. 5 holds within each linear region and "
        "K^(r) = 0 exactly once r exceeds the polynomial's degree (f's depth times H); such "
        "slopes are recorded as -inf",
    ]
    metrics = {"f_widths": widths.tolist(), "orders": orders, "fit_widths": widths[fit].tolist(),
               "statistics": stats, "per_draw_mean_abs_K": per_draw}  # fmt: skip
    claims = judge(cfg, metrics)
    return Result(metrics=metrics, claims=claims, comparison=comparison, notes=notes)


def judge(cfg: TaylorTermsConfig, metrics: dict[str, Any]) -> list[Claim]:
    """Thm 1: K^(r) ~ n^(H - r) for r > H, else ~ n^0; judged on the fitted slope of mean
    log|K^(r)| vs log n. A K^(r) that is identically zero (ReLU nets are piecewise polynomial
    in w) fits any rate: not judged (vacuous)."""
    tol = cfg.slope_tolerance
    claims = []
    for depth, by_r in metrics["statistics"].items():
        for r, st in by_r.items():
            want = st["predicted"]
            label = f"H={depth}, r={r}: K^(r) ~ n^{want}"
            rule = (f"the slope of mean log|K^(r)| against log n (n >= {cfg.fit_min_width}) "
                    f"within ±{tol} of {want} (the 95 % bootstrap interval recorded)")  # fmt: skip
            if st.get("identically_zero") or "interval_95" not in st:
                claims.append(Claim(label, PAPER_REF, None, {"predicted_slope": want,
                                    "K_r": "identically 0"}, rule=rule,  # fmt: skip
                                    not_judged="vacuous: K^(r) is identically 0 here, which "
                                    "fits any decaying rate"))  # fmt: skip
                continue
            lo, hi = st["interval_95"]
            claims.append(Claim(label, PAPER_REF, abs(st["slope"] - want) <= tol,
                                {"predicted_slope": want, "measured_slope": st["slope"],
                                 "interval_95": [lo, hi],
                                 "prediction_inside_interval": bool(lo <= want <= hi),
                                 "slope_of_median": st["slope_of_median"],
                                 "fit_widths": metrics["fit_widths"]}, rule=rule))  # fmt: skip
    return claims


def figure(ctx: RunContext[TaylorTermsConfig], metrics: dict[str, Any]) -> str:
    """mean log|K^(r)| ± std over draws against log n, one panel per depth H of g, with the
    fitted slope over the fit widths."""
    widths = np.array(metrics["f_widths"])
    fit = np.array(metrics["fit_widths"])
    stats = metrics["statistics"]
    fig, axes = plt.subplots(1, len(stats), figsize=(4.4 * len(stats), 3.8), squeeze=False)
    for ax, (depth, by_r) in zip(axes[0], stats.items(), strict=True):
        for r, st in by_r.items():
            if st["slope"] == -math.inf:
                continue
            m, sd = np.array(st["mean_log_abs_K"]), np.array(st["std_log_abs_K"])
            line = ax.errorbar(
                np.log2(widths),
                m,
                yerr=sd,
                marker="o",
                capsize=2,
                label=f"r={r}: slope {st['slope']:+.2f} (Eq. 6: {st['predicted']})",
            )
            sel = np.isin(widths, fit)
            c = m[sel].mean() - st["slope"] * np.log(widths[sel]).mean()
            ax.plot(np.log2(fit), c + st["slope"] * np.log(fit), "--",
                    color=line[0].get_color(), alpha=0.7)  # fmt: skip
        ax.set_xticks(np.log2(widths), [str(n) for n in widths], fontsize=7)
        ax.set_title(f"g depth H={depth}")
        ax.set_xlabel("width n of f (log scale)")
        ax.set_ylabel("mean over draws of log |K^(r)| (± 1 std)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return ctx.save_figure(fig, "thm1_taylor_terms")


def run(ctx: RunContext[TaylorTermsConfig]) -> Result:
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
        paper_sizes=sizes_of(TaylorTermsConfig, "f_widths", "g_depths", "orders", "draws"),
        presets={
            "full": {},
            "quick": {"f_widths": [64, 128, 256, 512, 1024], "cpu_threads": 1},
            "tiny": {
                "f_widths": [32, 128, 512],
                "fit_min_width": 128,
                "g_depths": [1, 2],
                "orders": [1, 2, 3],
                "draws": 3,
                "bootstrap": 50,
            },
        },
        run=run,
        judge=judge,
        uses_device=False,  # float64 kernels / a small CPU model: the CPU whatever is asked
        estimate=lambda c: (
            f"{len(c.g_depths) * len(c.f_widths) * c.draws} Taylor-term evaluations, "
            f"f up to width {max(c.f_widths)} (about 18 s each at width 4096 "
            "on one CPU core)"
        ),
        paper_reference={
            "equation": "Eq. 6: K^(r) ~ n^{H-r} if r > H, 1 otherwise",
            "claims": [
                "the higher-order terms vanish with the width of f only for r > H",
                "for H = 1 (a plain network) K^(r) ~ n^{1-r}",
            ],
        },
    )
)
