"""Fig. 3: rotation-prediction error of hypernetwork vs embedding method as the depth k of f
and e grows (g: d-10-12; f, e: width 50 on MNIST-like data, 100 on CIFAR-10; Sec. 5)."""

from __future__ import annotations

from dataclasses import dataclass

from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.experiments.claims import Claim
from hyperlab.experiments.config import param
from hyperlab.experiments.modularity.images import (
    ImageData,
    rotation_builders,
    rotation_claims,
    rotation_result,
    rotation_task,
    width,
)
from hyperlab.experiments.modularity.sweep import TunedSweepConfig, counts_recorder, sweep
from hyperlab.experiments.papers import MODULARITY
from hyperlab.experiments.scale import UNSTATED, sizes_of

PAPER_REF = "Fig. 3, Sec. 5"
#: The tiny sizes every rotation-based experiment's tests use.
TINY = {"n_train": 256, "n_test": 128, "epochs": 1, "seeds": 2, "width": 8,
        "tune_lrs": [0.01, 0.1], "tune_epochs": 1}  # fmt: skip


@dataclass(frozen=True)
class RotationConfig(ImageData, TunedSweepConfig):
    """Fig. 3: NLL, SGD lr 0.01, 10 epochs, batch 64 (authors' code), depths k of f and e."""

    depths: list[int] = param(list(range(2, 10)), "numbers of layers k of f and e", min=2)
    f_arch: str = param("paper", "f and e at depth k: 'paper' = k linear layers of width d "
                        "(Sec. 5); 'authors' = k + 2 linear layers of width 100 (the released "
                        "code's depth=k, notes A.2)", choices=("paper", "authors"))  # fmt: skip


def hidden_widths(cfg: RotationConfig, k: int) -> list[int]:
    """Hidden widths of f and e at depth k (``f_arch``): k - 1 of width d, or k + 1 of 100."""
    return [width(cfg)] * (k - 1) if cfg.f_arch == "paper" else [100] * (k + 1)


def run(ctx: RunContext[RotationConfig]) -> Result:
    """Compute the sweep over k, then summarise and draw Fig. 3."""
    cfg = ctx.config
    depths = list(cfg.depths)
    counts: list[dict] = []
    metrics, table = sweep(
        ctx,
        conventions=cfg,
        tuning=cfg,
        values=depths,
        make_task=lambda s: rotation_task(ctx, s),
        builders=rotation_builders(cfg, f_hidden=lambda k: hidden_widths(cfg, int(k))),
        on_model=counts_recorder(counts, "k"),
    )
    metrics = {"depths": depths, "dataset": cfg.dataset, "width": width(cfg), **metrics,
               "hidden_widths": [hidden_widths(cfg, k) for k in depths],
               "parameter_counts": counts}  # fmt: skip
    return rotation_result(
        ctx, depths, "k", metrics, table, stem=f"fig3_rotation_{cfg.dataset}",
        xlabel="number of layers k of f / e", claims=judge(cfg, metrics),
        title=f"Fig. 3: rotation prediction, {cfg.dataset} ({ctx.preset})",
    )  # fmt: skip


def judge(cfg: RotationConfig, metrics: dict) -> list[Claim]:
    """Fig. 3's sentences: the HN beats the embedding; the HN improves as f deepens; the
    embedding does not as e deepens."""
    return rotation_claims(cfg, metrics["depths"], metrics, what="depth k of f / e",
                           paper_ref=PAPER_REF, h_improves=True, e_flat=True)  # fmt: skip


register(
    Experiment(
        name="modularity-rotation",
        paper=MODULARITY,
        reproduces="Fig. 3",
        summary="Rotation prediction (12 classes): test error of hypernetwork vs embedding "
        "method as the depth k of f and e grows (g: d-10-12; f, e: width 50 MNIST / 100 CIFAR).",
        config_class=RotationConfig,
        paper_sizes=sizes_of(RotationConfig, "depths", "epochs", "n_train", "n_test")
        | {"dataset": ("mnist", "cifar10"), "seeds": UNSTATED},  # Fig. 3a, 3b
        presets={
            "full": {},
            # the released code's f and e (depth k -> k + 2 layers of width 100), its conventions
            "authors": {"f_arch": "authors", "init": "standard", "biases": ["f", "e", "q"]},
            "quick": {
                "n_train": 20_000,
                "n_test": 2_000,
                "epochs": 3,
                "seeds": 2,
                "depths": [2, 4, 6],
            },  # fmt: skip
            "tiny": TINY | {"depths": [2, 3]},
        },
        run=run,
        judge=judge,
        selects=("seeds", "depths"),
        estimate=lambda c: f"{2 * c.seeds * len(c.depths)} training runs of {c.epochs} epochs",
        paper_reference={
            "figure": "Fig. 3a (MNIST), 3b (CIFAR-10); no numbers in the text",
            "claims": [
                "the hypernetwork outperforms the embedding method by a wide margin",
                "the hypernetwork's error improves with its depth; the embedding's does not",
            ],
            "protocol": "NLL, 10 epochs, SGD lr 0.01, no regularisation (Sec. 5); batch 64 "
            "and 12 classes from the authors' code (notes A.2)",
        },
    )
)
