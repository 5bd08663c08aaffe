"""Fig. 2: training dynamics against the width and depth of g (rotation prediction, Sec. 5.2).

A fixed wide f generates a bias-free g; test accuracy per epoch for several depths and widths
of g. The paper: a wider g trains faster and reaches higher accuracy; a deeper g trains slower
and ends lower. ``model`` selects the hypernetwork
([`build_model`][hyperlab.experiments.infinite_width.dynamics.build_model]): ``authors`` as
released (notes B.4: f = d-200-200-200-100-N_g with PyTorch's default init, g with one ReLU
after its first layer and linear middle layers), ``authors_relu`` the same with a ReLU after
every hidden layer of g (the paper's text), ``hyperlab`` our earlier model (f = d-200-200-200-N_g
with a hyperfan-in head, ReLU g).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hyperlab.data import load_cifar10, load_mnist, rotation_pair_batch
from hyperlab.data.tasks import MNIST_MEAN, MNIST_STD
from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.experiments.claims import NOISE_SE, Claim, Verdict, binomial_se, compare, monotone
from hyperlab.experiments.config import Config, ConfigError, param
from hyperlab.experiments.evaluate import evaluate_batches
from hyperlab.experiments.papers import INFINITE_WIDTH
from hyperlab.experiments.scale import sizes_of
from hyperlab.experiments.stats import nanmean, nanstd
from hyperlab.hypernet import HyperModel
from hyperlab.plots import plt
from hyperlab.primary import MLP
from hyperlab.runtime import keep_freed_memory
from hyperlab.train import TrainingDiverged

PAPER_REF = "Fig. 2, Sec. 5.2"


@dataclass(frozen=True)
class DynamicsConfig(Config):
    """Fig. 2: the (depth, width) grid of g, f's size, and the training protocol."""

    model: str = param("authors", "authors (as released), authors_relu (ReLU after every "
                       "layer of g) or hyperlab (hyperfan head, no bottleneck)",
                       choices=("authors", "authors_relu", "hyperlab"))  # fmt: skip
    dataset: str = param("mnist", "mnist, or cifar10 with g_widths [100, 200, 300]",
                         choices=("mnist", "cifar10"))  # fmt: skip
    download: bool = param(False, "download missing data files")
    g_depths: list[int] = param([3, 6, 8], "depths of g", min=2)
    g_widths: list[int] = param([10, 50, 100], "widths of g", min=1)
    f_depth: int = param(4, "layers of f before the bottleneck (Sec. 5.2: 4)", min=2)
    f_width: int = param(200, "width of f's hidden layers", min=1)
    f_bottleneck: int = param(100, "width of the last hidden layer of f in the authors' models",
                              min=1)  # fmt: skip
    n_train: int = param(10_000, "training images (random subset)", min=1)
    n_test: int = param(10_000, "test images (random subset)", min=1)
    epochs: int = param(100, "training epochs", min=1)
    batch_size: int = param(100, "minibatch size", min=1)
    lr: float = param(0.01, "learning rate", positive=True)
    optimizer: str = param("sgd", "sgd (the paper) or adam", choices=("sgd", "adam"))
    momentum: float = param(0.0, "SGD momentum (the paper: none)", min=0)
    seeds: int = param(5, "runs per (depth, width) (the paper: 100)", min=1)
    batch_seeds: bool = param(
        False,
        "train the seeds of each (depth, width) side by side as one "
        "batched model (fit_seeds; per-seed results as one after "
        "another, to float tolerance); off by default: for this model it is "
        "slower on CPU (benchmarks/batched_seeds.py --models fig2 --steps 40 "
        "--repeat 2 [--keep-memory], one thread: 0.58x, 0.74x with freed memory "
        "kept), as vmap copies x once per unit of g's first layer",
    )

    def validate(self) -> None:
        if self.optimizer == "adam" and self.momentum:
            raise ConfigError(f"momentum: expected 0 with optimizer adam, got {self.momentum}")


def build_model(cfg: DynamicsConfig, d: int, depth: int, width: int,
                generator: torch.Generator) -> HyperModel:  # fmt: skip
    """The hypernetwork of ``cfg.model`` with a g of ``depth`` layers of ``width`` (12 logits)."""
    sizes = [d, *[width] * (depth - 1), 12]
    hidden = [cfg.f_width] * (cfg.f_depth - 1)
    if cfg.model == "hyperlab":
        g = MLP(sizes, "relu", bias=False)
        return HyperModel(g, d, hidden, generator=generator)
    acts = [True] * (depth - 1) if cfg.model == "authors_relu" else [True] + [False] * (depth - 2)
    g = MLP(sizes, "relu", bias=False, hidden_activations=acts)
    return HyperModel(g, d, [*hidden, cfg.f_bottleneck], init="standard", generator=generator)


def _images(ctx: RunContext[DynamicsConfig], split: str, n: int) -> torch.Tensor:
    cfg = ctx.config
    load = load_cifar10 if cfg.dataset == "cifar10" else load_mnist
    images, _ = load(split, data_dir=ctx.data_dir, download=cfg.download)
    idx = torch.randperm(images.shape[0], generator=ctx.generator("subset", split))[:n]
    return images[idx]


def _train_setting(ctx: RunContext[DynamicsConfig], d: int, depth: int, width: int,
                   train: torch.Tensor, loss, evaluate, transform
                   ) -> tuple[list[list[float]], list[int | None]]:  # fmt: skip
    """Every seed of one (depth, width) of g: accuracy per epoch (epoch 0: at init) and the
    epoch each diverged at (None: it did not); side by side with ``batch_seeds``."""
    cfg = ctx.config
    keys = [("fig2", cfg.model, cfg.dataset, depth, width, seed)
            for seed in range(cfg.seeds)]  # fmt: skip
    models = [build_model(cfg, d, depth, width, ctx.generator(*key, "init")).to(ctx.device)
              for key in keys]  # fmt: skip
    firsts = [evaluate(m)["accuracy"] for m in models]
    seen: list[list[float]] = [[] for _ in keys]  # each epoch's accuracy as it comes

    def record(m, seen=None):
        out = evaluate(m)
        if seen is not None:
            seen.append(out["accuracy"])
        return out

    kw: dict[str, Any] = dict(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        momentum=cfg.momentum,
        transform=transform,
    )
    if cfg.batch_seeds and len(keys) > 1:
        results: list = ctx.fit_seeds(
            models, loss, [{"image": train}] * len(keys), keys=keys,
            seed_keys=[(*k, "train") for k in keys],
            evaluate=[functools.partial(record, seen=sn) for sn in seen], **kw,
        )  # fmt: skip
    else:
        results = []
        for m, key, sn in zip(models, keys, seen, strict=True):
            try:
                results.append(ctx.fit(
                    m, loss, {"image": train}, key=key, seed_key=(*key, "train"),
                    desc=f"g{depth}x{width}s{key[-1]}",
                    evaluate=functools.partial(record, seen=sn), **kw,
                ))  # fmt: skip
            except TrainingDiverged as err:
                results.append(err)
    runs: list[list[float]] = []
    div: list[int | None] = []
    for first, sn, res in zip(firsts, seen, results, strict=True):
        if isinstance(res, TrainingDiverged):
            # the epochs evaluated before the divergence are kept, the rest are NaN
            curve = [first, *sn][: res.epoch]
            curve += [math.nan] * (cfg.epochs + 1 - len(curve))
            div.append(int(res.epoch))
        else:
            curve = [first, *res.series("accuracy")]
            div.append(None)
        runs.append(curve)
    return runs, div


def compute(ctx: RunContext[DynamicsConfig]) -> dict[str, Any]:
    """Accuracy per epoch (epoch 0 = init) of every run, and the epoch each diverged at."""
    cfg = ctx.config
    cifar = cfg.dataset == "cifar10"
    norm = {"mean": (0.5,) * 3, "std": (0.5,) * 3} if cifar else {"mean": MNIST_MEAN,
                                                                  "std": MNIST_STD}  # fmt: skip
    train = _images(ctx, "train", cfg.n_train)
    test = rotation_pair_batch(_images(ctx, "test", cfg.n_test), ctx.generator("test-angles"),
                               **norm)  # fmt: skip
    test = {k: test[k] for k in ("x", "cond", "y")}
    d = test["x"].shape[1]

    def transform(batch, gen):
        out = rotation_pair_batch(batch["image"], gen, **norm)
        return {k: out[k] for k in ("x", "cond", "y")}

    def loss(model, batch):
        return torch.nn.functional.cross_entropy(model(batch["x"], batch["cond"]), batch["y"])

    def evaluate(model):
        sums = evaluate_batches(
            model, test, lambda lg, b: {"ok": int((lg.argmax(-1) == b["y"]).sum())},
            device=ctx.device,
        )  # fmt: skip
        return {"accuracy": sums["ok"] / test["y"].shape[0]}

    acc: dict[str, dict[str, list[list[float]]]] = {}
    diverged: dict[str, dict[str, list[int | None]]] = {}
    bar = tqdm(total=len(cfg.g_depths) * len(cfg.g_widths) * cfg.seeds, desc="Fig. 2 runs",
               disable=not ctx.progress)  # fmt: skip
    for depth in cfg.g_depths:
        for width in cfg.g_widths:
            runs, div = _train_setting(ctx, d, depth, width, train, loss, evaluate, transform)
            bar.update(len(runs))
            acc.setdefault(str(depth), {})[str(width)] = runs
            diverged.setdefault(str(depth), {})[str(width)] = div
    bar.close()
    return {"accuracy": acc, "diverged": diverged}


def _beats(a: float, b: float) -> bool:
    """a > b, where a setting all of whose runs diverged (NaN) ranks below any that trained."""
    a = a if math.isfinite(a) else -math.inf
    b = b if math.isfinite(b) else -math.inf
    return bool(a > b)


def setting_stats(acc: dict[str, dict[str, list[list[float]]]]) -> dict[str, Any]:
    """Per (depth, width): final, initial, epoch-1 and mean-over-epochs accuracy (means over
    seeds, diverged runs left out), the final std, and which runs stayed at chance."""

    def per_setting(stat) -> dict[str, dict[str, float]]:
        return {dep: {w: nanmean([stat(r) for r in runs]) for w, runs in by_w.items()}
                for dep, by_w in acc.items()}  # fmt: skip

    chance = 1.0 / 12.0
    return {
        "final": per_setting(lambda r: r[-1]),
        "final_std": {
            dep: {w: nanstd([r[-1] for r in runs]) for w, runs in by_w.items()}
            for dep, by_w in acc.items()
        },  # fmt: skip
        "initial": per_setting(lambda r: r[0]),
        "first_epoch": per_setting(lambda r: r[1]),
        # mean accuracy over the training epochs: the area under the curve ("trains faster")
        "mean_curve": per_setting(lambda r: float(np.mean(r[1:]))),
        # an outcome, not a failure: the final accuracy stayed below twice chance
        "at_chance": {
            dep: {
                w: [bool(math.isfinite(r[-1]) and r[-1] < 2 * chance) for r in runs]
                for w, runs in by_w.items()
            }
            for dep, by_w in acc.items()
        },  # fmt: skip
        "chance": chance,
    }


def _final(runs: list[list[float]]) -> list[float]:
    return [r[-1] for r in runs]


def _first_epoch(runs: list[list[float]]) -> list[float]:
    return [r[1] if len(r) > 1 else math.nan for r in runs]


def _mean_over_epochs(runs: list[list[float]]) -> list[float]:
    out = []
    for r in runs:
        a = np.array([math.nan if v is None else v for v in r[1:]], dtype=float)
        out.append(float(a.mean()) if a.size and np.isfinite(a).all() else math.nan)
    return out


def _test_noise(runs: list[list[float]], n_test: int, stat) -> float:
    """The binomial standard error of one run's accuracy on ``n_test`` images (at the mean)."""
    vals = [v for v in stat(runs) if v is not None and math.isfinite(v)]
    return binomial_se(float(np.mean(vals)), n_test) if vals else math.nan


def width_claims(cfg: DynamicsConfig, acc: dict, depths: list[str],
                 widths: list[str]) -> list[Claim]:  # fmt: skip
    """Fig. 2's width sentence at every depth: the widest g beats the narrowest at the end and
    after epoch 1 (seed spread and each run's test-set noise; at chance: not judged)."""
    if len(widths) < 2:
        return []
    lo, hi = widths[0], widths[-1]
    chance = 1.0 / 12.0
    claims = []
    for dep in depths:
        for stat, when in ((_final, "ends more accurate"),
                           (_first_epoch, "is more accurate after epoch 1")):  # fmt: skip
            a, b = acc[dep][hi], acc[dep][lo]
            noise = (_test_noise(a, cfg.n_test, stat), _test_noise(b, cfg.n_test, stat))
            v = compare(stat(a), stat(b), lower=False, names=(f"width_{hi}", f"width_{lo}"),
                        noise=noise, chance=chance)  # fmt: skip
            claims.append(Claim.of(f"g depth {dep}: the widest g {when} than the narrowest",
                                   PAPER_REF, v))  # fmt: skip
    return claims


def depth_claims(cfg: DynamicsConfig, acc: dict, depths: list[str],
                 widths: list[str]) -> list[Claim]:  # fmt: skip
    """Fig. 2's depth sentence at every width, over every depth: a deeper g ends lower and
    trains slower (accuracy averaged over the epochs); all depths at chance: not judged."""
    if len(depths) < 2:
        return []
    chance = 1.0 / 12.0
    claims = []
    for w in widths:
        stats = ((_final, "the final accuracy"),
                 (_mean_over_epochs, "the accuracy averaged over the epochs"))  # fmt: skip
        for stat, what in stats:
            rows = [stat(acc[d][w]) for d in depths]
            noise = max(_test_noise(acc[d][w], cfg.n_test, stat) for d in depths)
            v = monotone([int(d) for d in depths], rows, name=what, noise=noise)
            at_chance = [all(abs(x - chance) <= NOISE_SE * noise for x in r if math.isfinite(x))
                         for r in rows]  # fmt: skip
            if all(at_chance):
                v = Verdict(None, v.rule, v.evidence, "every depth is at chance")
            claims.append(Claim.of(f"g width {w}: {what} falls as g deepens (over every depth)",
                                   PAPER_REF, v))  # fmt: skip
    return claims


def judge(cfg: DynamicsConfig, metrics: dict[str, Any]) -> list[Claim]:
    """Fig. 2: a wider g trains faster and ends higher; a deeper g trains slower and ends
    lower (no conjunction of these, no duplicate counted twice)."""
    acc = metrics["accuracy"]
    depths = [d for d in (str(h) for h in cfg.g_depths) if d in acc]
    widths = [w for w in (str(x) for x in cfg.g_widths) if depths and w in acc[depths[0]]]
    return width_claims(cfg, acc, depths, widths) + depth_claims(cfg, acc, depths, widths)


def _rows_and_notes(cfg: DynamicsConfig, st: dict[str, Any], n_div: dict, depths: list[str],
                    widths: list[str]) -> tuple[list, list[str], float]:  # fmt: skip
    """The comparison rows (final accuracy per setting, with what diverged or stayed at
    chance), the best final accuracy, and the notes on the model and protocol."""
    final, final_std, at_chance = st["final"], st["final_std"], st["at_chance"]

    def outcome(dep: str, w: str) -> str:
        out = []
        if n_div[dep][w]:
            out.append(f"{n_div[dep][w]}/{cfg.seeds} diverged")
        if any(at_chance[dep][w]):
            out.append(f"{sum(at_chance[dep][w])}/{cfg.seeds} stayed at chance")
        return f" ({', '.join(out)})" if out else ""

    comparison = [
        (f"final test accuracy, g depth {dep}, width {w}", "grows with width, falls with depth",
         f"{final[dep][w]:.3f} ± {final_std[dep][w]:.3f}{outcome(dep, w)}")
        for dep in depths
        for w in widths
    ]  # fmt: skip
    best = max((v for by in final.values() for v in by.values() if math.isfinite(v)), default=0.0)
    comparison.append(("best final test accuracy (chance 1/12 = 0.083)", "-", f"{best:.3f}"))
    return comparison, _notes(cfg), best


def _notes(cfg: DynamicsConfig) -> list[str]:
    opt_desc = (
        "SGD without momentum, as the paper"
        if cfg.optimizer == "sgd" and not cfg.momentum
        else f"{cfg.optimizer} (momentum {cfg.momentum}), not the paper's plain SGD"
    )
    f_desc = f"d-{'-'.join([str(cfg.f_width)] * (cfg.f_depth - 1))}"
    model_desc = {
        "authors": f"the released model (notes B.4): f = {f_desc}-{cfg.f_bottleneck}-N_g (ReLU, "
        "biases, PyTorch's default init), g bias-free with a ReLU after its first layer only "
        "(linear middle layers)",
        "authors_relu": f"the released model with the paper's ReLU g: f = {f_desc}-"
        f"{cfg.f_bottleneck}-N_g (PyTorch's default init), g bias-free with a ReLU after every "
        "hidden layer",
        "hyperlab": f"hyperlab's model: f = {f_desc}-N_g with a hyperfan-in head, g a bias-free "
        "ReLU MLP (the released code used PyTorch's default init and a 100-wide bottleneck)",
    }[cfg.model]
    return [
        f"{model_desc}; {opt_desc}, lr {cfg.lr}, batch {cfg.batch_size}, {cfg.epochs} epochs on "
        f"{cfg.n_train} images (new angles every epoch), test on {cfg.n_test}; labels: nearest "
        "multiple of 30 degrees of the relative angle a2 (notes B.4)",
        "a run whose final accuracy stays below twice chance is recorded as 'stayed at chance' "
        "(an outcome: the released model at depth 8 starts with logits ~1e-5 and SGD 0.01 does "
        "not move it in 100 epochs), not as a failure",
        f"{cfg.seeds} seeds per setting (the paper: 100); a diverged run (non-finite "
        "loss) keeps the accuracies of the epochs before it, NaN after, and its epoch is in "
        "diverged_at_epoch (null: did not diverge); means leave NaN out; in the claims a "
        "setting whose every run diverged ranks below any that trained",
    ]


def summarise(ctx: RunContext[DynamicsConfig], raw: dict[str, Any]) -> Result:
    """Final, first-epoch and mean-over-epochs accuracy per setting; the width/depth claims."""
    cfg = ctx.config
    acc, diverged = raw["accuracy"], raw["diverged"]
    st = setting_stats(acc)
    widths = [str(w) for w in cfg.g_widths]
    depths = [str(h) for h in cfg.g_depths]
    n_div = {dep: {w: sum(e is not None for e in v) for w, v in by.items()}
             for dep, by in diverged.items()}  # fmt: skip
    claims = judge(cfg, {"accuracy": acc})
    comparison, notes, best = _rows_and_notes(cfg, st, n_div, depths, widths)
    metrics = {
        "accuracy": acc,
        "final_accuracy": st["final"],
        "final_accuracy_std": st["final_std"],
        "stayed_at_chance": st["at_chance"],
        "initial_accuracy": st["initial"],
        "first_epoch_accuracy": st["first_epoch"],
        "mean_accuracy_over_epochs": st["mean_curve"],
        "diverged_at_epoch": diverged,
        "diverged_runs": n_div,
        "chance": st["chance"],
        "best_final_accuracy": best,
        "learned_above_chance": bool(best > 2 * st["chance"]),
    }
    return Result(metrics=metrics, claims=claims, comparison=comparison, notes=notes)


def figure(ctx: RunContext[DynamicsConfig], acc: dict[str, dict[str, list[list[float]]]]) -> str:
    """Test accuracy per epoch, mean ± std over seeds, one panel per depth of g."""
    cfg = ctx.config
    depths = list(acc)
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.6), squeeze=False,
                             sharey=True)  # fmt: skip
    for ax, dep in zip(axes[0], depths, strict=True):
        for i, (w, runs) in enumerate(acc[dep].items()):
            arr = np.array(runs, dtype=float)
            with warnings.catch_warnings():  # all-diverged settings give NaN curves, quietly
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(arr, 0), np.nanstd(arr, 0)
            ep = np.arange(arr.shape[1])
            every = max(1, len(ep) // 10)
            ax.errorbar(ep, mean, yerr=std, capsize=2, errorevery=every, marker="os^D"[i % 4],
                        markevery=every, label=f"width {w}")  # fmt: skip
        ax.axhline(1 / 12, color="grey", ls=":", lw=1, label="chance (1/12)")
        ax.set_title(f"{cfg.dataset}, g depth {dep}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title=f"mean ± 1 std over {cfg.seeds} seeds", title_fontsize=8)
    return ctx.save_figure(fig, f"fig2_dynamics_{cfg.dataset}")


def run(ctx: RunContext[DynamicsConfig]) -> Result:
    """compute → summarise → figure."""
    # the fused first layer's weight gradient is a fresh 31 MB tensor every step: reusing warm
    # pages makes a depth-8, width-100 step ~7 % faster (one thread, idle Intel Xeon, three
    # runs of `benchmarks/experiment_floors.py --repeats 20` with and without
    # --plain-allocator: 96.4 / 101.2 / 104.2 against 100.6 / 108.5 / 112.3 ms)
    with keep_freed_memory():
        raw = compute(ctx)
    result = summarise(ctx, raw)
    result.figures = [figure(ctx, raw["accuracy"])]
    return result


register(
    Experiment(
        name="infinite-width-dynamics",
        paper=INFINITE_WIDTH,
        reproduces="Fig. 2",
        summary="Test accuracy over training of rotation-prediction hypernetworks (f: depth 4, "
        "width 200) for g of depth 3/6/8 and several widths (MNIST; --set dataset=cifar10 "
        "g_widths=[100,200,300] for the CIFAR row).",
        config_class=DynamicsConfig,
        paper_sizes=sizes_of(DynamicsConfig, "g_depths", "g_widths", "epochs", "n_train", "n_test")
        | {"dataset": ("mnist", "cifar10"), "seeds": 100},  # Sec. 5.2: 100 runs per curve
        presets={
            "full": {},
            # quick: the paper's protocol at width 10 (about 5 min per run on one core here)
            "quick": {"g_widths": [10], "n_test": 2000, "seeds": 1, "cpu_threads": 1},
            "tiny": {
                "g_depths": [3, 6],
                "g_widths": [10, 50],
                "f_width": 32,
                "n_train": 200,
                "n_test": 200,
                "epochs": 1,
                "seeds": 1,
            },
        },  # fmt: skip
        run=run,
        judge=judge,
        selects=("g_depths", "g_widths", "seeds"),  # the checkpoint keys name depth, width, seed
        estimate=lambda c: (
            f"{len(c.g_depths) * len(c.g_widths) * c.seeds} training runs of "
            f"{c.epochs} epochs on {c.n_train:,} images (width 10: about 5 "
            "min per run on one CPU core; wider g costs more)"
        ),
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
