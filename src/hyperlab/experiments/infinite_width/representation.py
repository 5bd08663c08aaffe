"""Table 1: MNIST image representation and inpainting by kernel regression (Eq. 18).

The hyperkernel (Thm 3) and the hypernetwork NNGP (Thm 2) with RBF input kernel on the pixel
coordinates, in the S-weighted form (hyperlab's default, Monte Carlo confirmed) and the authors'
released form, against a trained hypernetwork (the "HN" row, `.representation_hn`), on N
training images × 20 random pixels (the released code's protocol, notes B.2).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from hyperlab.data import load_mnist
from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.experiments.claims import NOISE_SE, Claim, at_every, compare, monotone
from hyperlab.experiments.config import ConfigError, param
from hyperlab.experiments.infinite_width.common import DT
from hyperlab.experiments.infinite_width.fitted import FITTED, FittedSolver
from hyperlab.experiments.infinite_width.representation_hn import HNConfig, describe_hn, train_hn
from hyperlab.experiments.papers import INFINITE_WIDTH
from hyperlab.experiments.scale import sizes_of
from hyperlab.experiments.stats import nanmean, nanstd
from hyperlab.kernels import CGOptions, HyperKernel, check_cg_memory, fit_kernel_regression
from hyperlab.kernels.analytic import Variant
from hyperlab.plots import plt

PAPER_REF = "Table 1, Sec. 5.3"
#: Table 1 as printed (the HN inpainting entry at N = 500 is printed 0.49; read as 0.049).
TABLE1 = {
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
TABLE1_NS = [50, 100, 200, 500]
KERNELS = {"HK": "ntk", "NNGP": "nngp"}


@dataclass(frozen=True)
class RepresentationConfig(HNConfig):
    """Table 1: N, tasks, kernel variants and the released code's protocol (notes B.2)."""

    ns: list[int] = param(list(TABLE1_NS), "numbers N of training images", min=1)
    tasks: list[str] = param(["representation", "inpainting"], "tasks",
                             choices=("representation", "inpainting"))  # fmt: skip
    variants: list[str] = param(["s_weighted", "released"], "kernel forms (the first is the "
                                "headline)", choices=("s_weighted", "released"))  # fmt: skip
    copies: int = param(20, "copies of each training image, one random pixel each", min=1)
    avg_terms: int = param(5, "pixel draws the predictions are averaged over", min=1)
    test_images: int = param(100, "test images (all 784 pixels each)", min=1)
    test_chunk: int = param(4, "test images per kernel-regression solve", min=1)
    train_offset: int = param(5000, "index of the first training image", min=0)
    f_depth: int = param(3, "layers of the kernels' f", min=2)
    g_depth: int = param(3, "layers of the kernels' g", min=2)
    lengthscale: float = param(math.sqrt(2.0), "RBF lengthscale of g's input kernel",
                               positive=True)  # fmt: skip
    eps: float = param(1e-3, "ridge of the kernel regression", min=0)
    ridge: str = param("identity", "ridge form of kernel_regression",
                       choices=("identity", "relative"))  # fmt: skip
    solver: str = param("dense", "kernel-regression solver: 'dense' (Cholesky of the N×N kernel) "
                        "or 'cg' (matrix-free preconditioned CG, for N beyond memory)",
                        choices=("dense", "cg"))  # fmt: skip
    cg_tol: float = param(1e-6, "CG: relative residual to stop at", positive=True)
    cg_rank: int = param(1000, "CG: rank of the (Nyström) preconditioner", min=0)
    cg_dtype: str = param("float64", "CG: dtype of the kernel tiles (products accumulate in "
                          "float64)", choices=("float64", "float32"))  # fmt: skip
    cg_cache_gb: float = param(0.0, "CG: memory for keeping kernel tiles between products "
                               "(0: fully matrix-free)", min=0)  # fmt: skip
    fit_hyperparameters: bool = param(
        False,
        "also fit each kernel's input scale, RBF lengthscale and noise by marginal likelihood "
        "and solve with the fitted kernel (rows '<variant>+fitted'; .fitted)",
    )
    fit_points: int = param(1000, "samples the marginal likelihood is fitted on", min=2)
    fit_steps: int = param(100, "Adam steps of the marginal-likelihood fit", min=1)
    download: bool = param(False, "download missing data files")


def pixel_coords() -> torch.Tensor:
    """g's inputs: the raw (column, row) coordinates of MNIST's 784 pixels, (784, 2) float64."""
    rows, cols = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    return torch.stack([cols.reshape(-1), rows.reshape(-1)], 1).to(DT)


def table1_context(images: torch.Tensor, task: str) -> torch.Tensor:
    """f's input: the (masked) image with unit cosine normalisation (norm √784, Σ⁰ = cos)."""
    x = images.reshape(images.shape[0], -1).to(DT) / 255.0
    if task == "inpainting":
        x = x.clone()
        x[:, 392:] = 0.0  # the released code keeps the first 392 pixels: the top 14 rows
    norm = x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x / norm * math.sqrt(x.shape[1])


def _kernels(ctx: RunContext[RepresentationConfig]) -> dict[str, Any]:
    """The analytic kernel per variant, and with ``fit_hyperparameters`` its fitted form."""
    cfg = ctx.config
    kernels: dict[str, Any] = {
        v: HyperKernel(784, 2, cfg.f_depth, cfg.g_depth, z_kernel="rbf",
                       lengthscale=cfg.lengthscale, variant=cast(Variant, v))
        for v in cfg.variants
    }  # fmt: skip
    if cfg.fit_hyperparameters:
        kernels |= {v + FITTED: FittedSolver(kernels[v], KERNELS, points=cfg.fit_points,
                                             steps=cfg.fit_steps, noise=max(cfg.eps, 1e-6),
                                             generator=ctx.generator)
                    for v in cfg.variants}  # fmt: skip
    return kernels


def compute(ctx: RunContext[RepresentationConfig]) -> dict[str, Any]:
    """Kernel-regression MSE per (variant, task, kernel, N) and the HN runs per (task, N)."""
    cfg = ctx.config
    train_imgs, _ = load_mnist("train", data_dir=ctx.data_dir, download=cfg.download)
    test_imgs, _ = load_mnist("test", data_dir=ctx.data_dir, download=cfg.download)
    perm = torch.randperm(test_imgs.shape[0], generator=ctx.generator("test-perm"))
    test = test_imgs[perm[: cfg.test_images]]
    dev = ctx.device
    check_memory(cfg, dev)
    coords = pixel_coords().to(dev)
    kernels = _kernels(ctx)
    mse: dict[str, dict[str, dict[str, list[float]]]] = {}
    hn: dict[str, dict[str, dict[str, list]]] = {"mse": {}, "train": {}, "diverged": {}}
    solves: list[dict[str, Any]] = []
    bar = tqdm(total=len(cfg.tasks) * len(cfg.ns) * (cfg.avg_terms + cfg.hn_runs),
               desc="Table 1", disable=not ctx.progress)  # fmt: skip
    for task in cfg.tasks:
        x_test = table1_context(test, task).to(dev)
        y_test = (test.reshape(test.shape[0], -1).to(DT) / 255.0).to(dev)  # (T, 784)
        for n in cfg.ns:
            imgs = train_imgs[cfg.train_offset : cfg.train_offset + n]
            x_imgs = table1_context(imgs, task).to(dev)
            pix_imgs = (imgs.reshape(n, -1).to(DT) / 255.0).to(dev)
            x_train = x_imgs.repeat_interleave(cfg.copies, 0)
            preds = {(k, v): torch.zeros_like(y_test) for v in kernels for k in KERNELS}
            drawn = []  # every draw's pixels, (n, copies) each: the HN trains on all of them
            for draw in range(cfg.avg_terms):
                gen = ctx.generator("pixels", task, n, draw)
                pix = torch.randint(0, 784, (n * cfg.copies,), generator=gen).to(dev)
                drawn.append(pix.reshape(n, cfg.copies))
                z_train = coords[pix]
                idx = torch.arange(n * cfg.copies, device=dev)
                y_train = pix_imgs.repeat_interleave(cfg.copies, 0)[idx, pix]
                for variant, kern in kernels.items():
                    train = (x_train, z_train)
                    predict, info = (kern((task, n), train, y_train)
                                     if isinstance(kern, FittedSolver)
                                     else _solve(cfg, kern, train, y_train))  # fmt: skip
                    solves.append({"task": task, "n": n, "draw": draw, "variant": variant,
                                   "samples": len(y_train), **info})  # fmt: skip
                    for t0 in range(0, test.shape[0], cfg.test_chunk):
                        t1 = min(t0 + cfg.test_chunk, test.shape[0])
                        xt = x_test[t0:t1].repeat_interleave(784, 0)
                        zt = coords.repeat(t1 - t0, 1)
                        for name, pred in predict((xt, zt)).items():
                            preds[(name, variant)][t0:t1] += (
                                pred.reshape(t1 - t0, 784) / cfg.avg_terms
                            )
                bar.update()
            for (name, variant), pred in preds.items():
                err = float(((pred - y_test) ** 2).mean())
                mse.setdefault(variant, {}).setdefault(task, {}).setdefault(name, []).append(err)
            hn_pix = torch.cat(drawn, 1)
            for key in hn:
                hn[key].setdefault(task, {})[str(n)] = []
            for run_ in range(cfg.hn_runs):
                err, train_loss, diverged = train_hn(
                    ctx,
                    task,
                    run_,
                    x_imgs,
                    hn_pix,
                    pix_imgs,
                    x_test,
                    y_test,
                    coords,
                    cfg.lengthscale,
                )
                hn["mse"][task][str(n)].append(err)
                hn["train"][task][str(n)].append(train_loss)
                hn["diverged"][task][str(n)].append(diverged)
                bar.update()
    bar.close()
    return {"mse": mse, "hn": hn, "solves": solves,
            "max_jitter": max((r.get("jitter", 0.0) for r in solves), default=0.0)}  # fmt: skip


def _ridge(cfg: RepresentationConfig) -> Literal["identity", "relative"]:
    return "relative" if cfg.ridge == "relative" else "identity"


def _cg_options(cfg: RepresentationConfig) -> CGOptions:
    return CGOptions(tol=cfg.cg_tol, rank=cfg.cg_rank, dtype=getattr(torch, cfg.cg_dtype),
                     cache_gb=cfg.cg_cache_gb)  # fmt: skip


def check_memory(cfg: RepresentationConfig, device: torch.device | str = "cpu") -> None:
    """Before any work: the largest CG solve (both kernels side by side) fits the free memory,
    else a ConfigError naming cg_rank and cg_cache_gb."""
    if cfg.solver != "cg":
        return
    try:
        check_cg_memory(max(cfg.ns) * cfg.copies, _cg_options(cfg), kernels=len(KERNELS),
                        device=device)  # fmt: skip
    except MemoryError as err:
        raise ConfigError(f"cg_rank / cg_cache_gb: {err}") from None


def _solve(cfg: RepresentationConfig, kern: HyperKernel, train: tuple, y: torch.Tensor) -> tuple:
    """Eq. 18 for the hyperkernel ('ntk') and the NNGP on one training set: a function mapping
    test inputs to both predictions, and what the solve cost. Dense: one Cholesky per kernel;
    CG: both kernels solved side by side on shared tiles, K never held."""
    start = time.perf_counter()
    gets = tuple(KERNELS.values())
    cg = _cg_options(cfg)
    # both kernels share f's kernels and g's recursion: solved side by side
    fit = fit_kernel_regression(kern, train, y, get=gets, eps=cfg.eps, ridge=_ridge(cfg),
                                solver="cg" if cfg.solver == "cg" else "cholesky", cg=cg,
                                jitter="auto")  # fmt: skip
    info = ({"iterations": fit.iterations, "residual": fit.residual, **fit.cg_stats}
            if fit.solver == "cg" else {"jitter": fit.jitter})  # fmt: skip

    def predict(test: tuple) -> dict[str, torch.Tensor]:
        out = fit.predict(test)
        return {name: out[get].mean for name, get in KERNELS.items()}

    info["fit_seconds"] = round(time.perf_counter() - start, 2)
    return predict, info


def _paper(task: str, name: str, n: int) -> float | None:
    return TABLE1[task][name][TABLE1_NS.index(n)] if n in TABLE1_NS else None


def table1(cfg: RepresentationConfig, raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Table 1 per task in one place: the kernels' and the trained HN's MSE per N, beside the
    paper's row."""
    mse, hn = raw["mse"], raw["hn"]
    ns = list(cfg.ns)
    main = cfg.variants[0]
    tables: dict[str, dict[str, Any]] = {}
    for task in cfg.tasks:
        runs = [hn["mse"][task][str(n)] for n in ns]
        tables[task] = {
            "n_train": ns,
            "kernel_variant": main,
            "hyperkernel_mse": mse[main][task]["HK"],
            "nngp_mse": mse[main][task]["NNGP"],
            "hypernetwork_mse": [nanmean(r) for r in runs],
            "hypernetwork_mse_std": [nanstd(r) for r in runs],
            "hypernetwork_mse_runs": runs,
            "hypernetwork_train_mse": [nanmean(hn["train"][task][str(n)]) for n in ns],
            "hypernetwork_diverged": [hn["diverged"][task][str(n)] for n in ns],
            "paper": {"n_train": TABLE1_NS, "hyperkernel_mse": TABLE1[task]["HK"],
                      "nngp_mse": TABLE1[task]["NNGP"], "hypernetwork_mse": TABLE1[task]["HN"]},
        }  # fmt: skip
    return tables


def kernel_rows(ns: list[int], mse: dict[str, Any]) -> list:
    """Rows per kernel entry, ours beside the paper's."""
    rows = []
    for variant, by_task in mse.items():
        for task, by_kernel in by_task.items():
            for name, values in by_kernel.items():
                for n, v in zip(ns, values, strict=True):
                    ref = _paper(task, name, n)
                    rows.append((f"{task} {name} ({variant}) N={n}",
                                 "-" if ref is None else f"{ref}", f"{v:.4f}"))  # fmt: skip
    return rows


def hn_rows(cfg: RepresentationConfig, tables: dict[str, dict[str, Any]]) -> list:
    """Rows of the trained HN, ours beside the paper's."""
    rows = []
    for task, tab in tables.items():
        for i, n in enumerate(cfg.ns):
            ref = _paper(task, "HN", n)
            paper = "-" if ref is None else f"{ref}"
            if task == "inpainting" and n == 500:
                paper += " (printed 0.49)"
            rows.append((
                f"{task} HN (trained, {cfg.hn_runs} runs) N={n}", paper,
                f"{tab['hypernetwork_mse'][i]:.4f} ± {tab['hypernetwork_mse_std'][i]:.4f}",
            ))  # fmt: skip
    return rows


#: the kernels are deterministic on a run's images: their comparisons have no repetition noise
DETERMINISTIC = ("the kernels' MSEs are deterministic on this run's images (no repetition "
                 "noise; the test images' sampling noise is not estimated)")  # fmt: skip


def judge(cfg: RepresentationConfig, metrics: dict[str, Any]) -> list[Claim]:
    """Table 1: the NNGP beats the hyperkernel and both improve with N (per variant); the
    kernels beat the trained HN at small N and the NNGP at every N; the HN improves with N
    (over its runs)."""
    ns = list(metrics["ns"])
    claims: list[Claim] = []
    for variant, by_task in metrics["mse"].items():
        if variant.endswith(FITTED):  # a diagnostic of ours, not the paper's kernels
            continue
        for task, by_kernel in by_task.items():
            hk, gp = by_kernel["HK"], by_kernel["NNGP"]
            ev = {"N": ns, "hyperkernel": hk, "nngp": gp}
            claims.append(Claim(
                f"{task} ({variant}): NNGP beats the hyperkernel at every N", PAPER_REF,
                all(b < a for a, b in zip(hk, gp, strict=True)), ev,
                rule=f"NNGP MSE < hyperkernel MSE at every N; {DETERMINISTIC}",
            ))  # fmt: skip
            if len(ns) > 1:
                claims.append(Claim(
                    f"{task} ({variant}): MSE falls as N grows (both kernels)", PAPER_REF,
                    all(bool(np.all(np.diff(v) < 0)) for v in (hk, gp)), ev,
                    rule=f"every step to a larger N lowers both kernels' MSE; {DETERMINISTIC}",
                ))  # fmt: skip
    for task in metrics["mse"][cfg.variants[0]]:
        claims += _hn_claims(cfg, task, metrics[task], ns)
    return claims


def _hn_claims(cfg: RepresentationConfig, task: str, tab: dict[str, Any],
               ns: list[int]) -> list[Claim]:  # fmt: skip
    """The trained HN (its runs give the noise) against the deterministic kernels."""
    runs = [list(r) for r in tab["hypernetwork_mse_runs"]]
    if not any(runs):
        reason = "no trained HN in this run (hn_runs = 0)"
        return [Claim(f"{task}: {text}", PAPER_REF, None, {}, not_judged=reason)
                for text in ("at the smallest N both kernels beat the trained HN",
                             "the NNGP beats the trained HN at every N")]  # fmt: skip
    hk, gp = tab["hyperkernel_mse"], tab["nngp_mse"]
    main = cfg.variants[0]
    zero = (0.0, None)  # a kernel's side: one deterministic value
    small = [
        compare([hk[0]], runs[0], names=("hyperkernel", "hypernetwork"), noise=zero),
        compare([gp[0]], runs[0], names=("nngp", "hypernetwork"), noise=zero),
    ]
    held = (False if any(v.held is False for v in small)
            else True if all(v.held for v in small) else None)  # fmt: skip
    claims = [Claim(
        f"{task}: at the smallest N both kernels ({main}) beat the trained HN", PAPER_REF, held,
        {"N": ns[0], "hyperkernel": hk[0], "nngp": gp[0], **small[0].evidence},
        rule=f"each kernel's MSE below the HN's mean beyond {NOISE_SE:g} SE of its runs",
        not_judged=None if held is not None else "within the HN runs' noise",
    )]  # fmt: skip
    claims.append(Claim.of(
        f"{task}: the NNGP ({main}) beats the trained HN at every N", PAPER_REF,
        at_every(ns, [[v] for v in gp], runs, names=("nngp", "hypernetwork"), noise=zero),
    ))  # fmt: skip
    if len(ns) > 1:
        claims.append(Claim.of(f"{task}: the trained HN's MSE falls as N grows", PAPER_REF,
                               monotone(ns, runs, name="the HN's test MSE")))  # fmt: skip
    return claims


def notes(cfg: RepresentationConfig) -> list[str]:
    """What the protocol is, and how to read the offset from the printed table."""
    main = cfg.variants[0]
    return [
        "protocol of the released code (notes B.2): N training images, each tiled "
        f"{cfg.copies} times with one random pixel per copy, predictions averaged over "
        f"{cfg.avg_terms} pixel draws; g's input kernel exp(-‖p - p'‖²/4) on raw pixel "
        "coordinates; f's input the unit-normalised (masked) image",
        "'s_weighted' is hyperlab's default (Monte Carlo confirmed); 'released' drops the "
        "S factors as the authors' code does",
        "HN row (the paper's widths/optimizer are unknown, notes B.7): "
        + describe_hn(cfg, cfg.lengthscale)
        + "; it trains on exactly the kernels' (image, "
        f"pixel) samples: the union of the {cfg.avg_terms} draws, {cfg.copies * cfg.avg_terms} "
        f"pixels per image; test MSE over all 784 pixels of the same {cfg.test_images} test "
        f"images; mean ± std over {cfg.hn_runs} runs (the paper: 20); a diverged run is "
        "recorded as NaN and left out of the mean",
        "the paper's HN inpainting entry at N=500 is printed '0.49'; it is almost surely "
        "0.049 (it must lie below 0.066 to fit the row's trend), and is used as such",
        "offset from the printed table: an earlier session ran the authors' released pipeline "
        "(its 'released' kernels, notes B.2) beside ours on the same images: all 32 entries at "
        "N = 50-500 agreed within ±0.0015, and both sit 11-24 % above the paper's printed "
        "numbers, cause unknown; compare our 'released' rows with the paper's on that basis",
        f"{cfg.test_images} test images (all 784 pixels each): the released code hard-codes 10; "
        "the full 10k test set would cost ~100x the kernel time of this run",
        f"solver {cfg.solver!r}"
        + (
            f" (matrix-free PCG: tol {cfg.cg_tol:g}, preconditioner rank {cfg.cg_rank}, "
            f"{cfg.cg_dtype} tiles, {cfg.cg_cache_gb:g} GB of tiles kept between products; "
            "metrics.solves lists iterations and seconds)"
            if cfg.solver == "cg"
            else " (Cholesky of the N×N kernel)"
        ),
        f"metrics[task] holds Table 1 in one place: n_train, hyperkernel_mse and nngp_mse "
        f"({main} kernels), hypernetwork_mse (± std), and the paper's row",
    ]


def summarise(ctx: RunContext[RepresentationConfig], raw: dict[str, Any]) -> Result:
    """Table 1 per task (ours beside the paper's), the comparison rows and the claims."""
    cfg = ctx.config
    ns = list(cfg.ns)
    tables = table1(cfg, raw)
    metrics = {"ns": ns, "mse": raw["mse"], "max_jitter": raw["max_jitter"],
               "solver": cfg.solver, "solves": raw["solves"], **tables}  # fmt: skip
    return Result(metrics=metrics, claims=judge(cfg, metrics),
                  comparison=kernel_rows(ns, raw["mse"]) + hn_rows(cfg, tables),
                  notes=notes(cfg))  # fmt: skip


def figure(ctx: RunContext[RepresentationConfig], metrics: dict[str, Any]) -> str:
    """Test MSE against N per task: one colour per method (HK, NNGP, HN); ours solid
    (s_weighted) or dashed (released), the paper's printed rows dotted with crosses."""
    ns, mse = metrics["ns"], metrics["mse"]
    colours = {"HK": "tab:blue", "NNGP": "tab:orange", "HN": "tab:purple"}
    styles = {"s_weighted": "-", "released": "--", "s_weighted+fitted": "-.",
              "released+fitted": ":"}  # fmt: skip
    tasks = sorted({t for v in mse.values() for t in v})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.4 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for variant, by_task in mse.items():
            for name, values in by_task[task].items():
                ax.plot(ns, values, styles.get(variant, "-"), marker="o", color=colours[name],
                        label=f"{name} ({variant})")  # fmt: skip
        tab = metrics[task]
        runs = len(tab["hypernetwork_mse_runs"][0])
        if runs:
            ax.errorbar(ns, tab["hypernetwork_mse"], yerr=tab["hypernetwork_mse_std"],
                        marker="s", capsize=2, color=colours["HN"],
                        label=f"HN, trained (± 1 std over {runs} runs)")  # fmt: skip
        for name in ("HK", "NNGP", "HN"):
            ax.plot(TABLE1_NS, TABLE1[task][name], ":", marker="x", color=colours[name],
                    alpha=0.8, label=f"{name} (paper, printed)")  # fmt: skip
        ax.set_xscale("log")
        ticks = sorted(set(ns) | set(TABLE1_NS))
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel("N (training images, 20 pixels each)")
        ax.set_ylabel("test MSE (all 784 pixels)")
        ax.set_title(f"Table 1, {task}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return ctx.save_figure(fig, "table1_representation")


def run(ctx: RunContext[RepresentationConfig]) -> Result:
    """compute → summarise → figure."""
    result = summarise(ctx, compute(ctx))
    result.figures = [figure(ctx, result.metrics)]
    return result


register(
    Experiment(
        name="infinite-width-representation",
        paper=INFINITE_WIDTH,
        reproduces="Table 1 (HK, NNGP and HN rows)",
        summary="MNIST image representation and inpainting by kernel regression (Eq. 18) with the "
        "hyperkernel and the hypernetwork NNGP, N training images x 20 random pixels, against a "
        "trained hypernetwork (HN) on the same samples.",
        config_class=RepresentationConfig,
        paper_sizes=sizes_of(RepresentationConfig, "tasks")
        | {
            "ns": list(TABLE1_NS),
            "hn_runs": 20,  # Sec. 5.3: averages over 20 runs
            "test_images": 10,
        },  # the released code's test set
        presets={
            "full": {},
            "quick": {
                "ns": [50, 100],
                "avg_terms": 2,
                "test_images": 10,
                "hn_runs": 3,
                "hn_f_width": 128,
                "hn_fourier_features": 64,
                "hn_steps": 500,
            },
            "large": {  # beyond the paper's N = 500: 60,000 (image, pixel) samples at N = 3,000
                "ns": [100, 500, 1000, 3000],
                "tasks": ["representation"],
                "variants": ["s_weighted"],
                "avg_terms": 1,
                "hn_runs": 0,
                "test_images": 20,
                "test_chunk": 20,
                "solver": "cg",
                "cg_dtype": "float32",
                "cg_tol": 1e-5,
                "cg_cache_gb": 12.0,  # 83 % of the 60k float32 tiles (14.4 GB): the rest recomputed
            },
            "tiny": {
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
        },  # fmt: skip
        run=run,
        judge=judge,
        estimate=lambda c: (
            f"kernel regression at N = {c.ns} images x {c.copies} pixels, {c.avg_terms} "
            f"draws, {len(c.variants)} kernel variants, {len(c.tasks)} tasks, "
            f"{c.test_images} test images; {c.hn_runs * len(c.ns) * len(c.tasks)} "
            "trained HNs"
        ),
        paper_reference={
            "table": TABLE1,
            "ns": TABLE1_NS,
            "claims": [
                "in the low-data regime the kernels outperform a trained hypernetwork",
                "the NNGP consistently outperforms the hyperkernel",
                "every method (HK, NNGP, HN) improves as N grows (Table 1's rows)",
            ],
            "note": "the HN inpainting value '0.49' at N=500 is read as 0.049 (notes B.5)",
        },
    )
)
