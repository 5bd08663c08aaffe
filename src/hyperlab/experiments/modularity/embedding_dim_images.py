"""Appendix 1.2: rotation error as the embedding dimension grows (f and e of fixed depth).

Our reading of the authors' code (notes A.2/A.6): e has 3 layers and output E_i =
e_dim_step * (i + 1); the hypernetwork's counterpart is the width of f's last hidden layer,
f_dim_step * (i + 1) (its output stays N_g).
"""

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
from hyperlab.experiments.modularity.rotation import TINY
from hyperlab.experiments.modularity.sweep import TunedSweepConfig, counts_recorder, sweep
from hyperlab.experiments.papers import MODULARITY
from hyperlab.experiments.scale import UNSTATED, sizes_of

PAPER_REF = "App. 1.2"


@dataclass(frozen=True)
class EmbeddingDimImagesConfig(ImageData, TunedSweepConfig):
    """App. 1.2: fixed depth, swept embedding dimension (sizes from the authors' code)."""

    depth: int = param(3, "number of layers of f and e", min=2)
    dims: list[int] = param(list(range(2, 10)), "steps i of the embedding dimension", min=0)
    e_dim_step: int = param(10_000, "e's output is e_dim_step * (i + 1)", min=1)
    f_dim_step: int = param(50, "f's last hidden width is f_dim_step * (i + 1)", min=1)


def run(ctx: RunContext[EmbeddingDimImagesConfig]) -> Result:
    """Compute the sweep over i, then summarise and draw the appendix figure."""
    cfg = ctx.config
    steps = list(cfg.dims)
    w, k = width(cfg), cfg.depth
    counts: list[dict] = []

    def f_hidden(i: int) -> list[int]:
        return [w] * (k - 2) + [cfg.f_dim_step * (i + 1)]

    metrics, table = sweep(
        ctx,
        conventions=cfg,
        tuning=cfg,
        values=steps,
        make_task=lambda s: rotation_task(ctx, s),
        builders=rotation_builders(
            cfg,
            embedding_dim=lambda i: cfg.e_dim_step * (i + 1),
            f_hidden=f_hidden,
            e_hidden=lambda i: [w] * (k - 1),
        ),
        on_model=counts_recorder(counts, "i"),
    )
    metrics = {
        "dims": steps,
        "f_embedding_dims": [cfg.f_dim_step * (i + 1) for i in steps],
        "e_embedding_dims": [cfg.e_dim_step * (i + 1) for i in steps],
        "dataset": cfg.dataset,
        **metrics,
        "parameter_counts": counts,
    }
    return rotation_result(
        ctx, steps, "i", metrics, table, stem=f"figA_embedding_dim_{cfg.dataset}",
        xlabel=f"i (E = {cfg.e_dim_step}(i+1) for e, last width {cfg.f_dim_step}(i+1) for f)",
        claims=judge(cfg, metrics),
        title=f"Appendix: embedding dimension, rotation, {cfg.dataset} ({ctx.preset})",
    )  # fmt: skip


def judge(cfg: EmbeddingDimImagesConfig, metrics: dict) -> list[Claim]:
    """App. 1.2: a larger embedding does not close the gap to the hypernetwork."""
    return rotation_claims(cfg, metrics["dims"], metrics, what="embedding dimension",
                           paper_ref=PAPER_REF, h_improves=False, e_flat=True)  # fmt: skip


register(
    Experiment(
        name="modularity-embedding-dim-images",
        paper=MODULARITY,
        reproduces="App. 1.2",
        summary="Rotation prediction as the embedding dimension grows: e of 3 layers with output "
        "10^4(i+1) (authors' code), f with last hidden width 50(i+1).",
        config_class=EmbeddingDimImagesConfig,
        paper_sizes=sizes_of(EmbeddingDimImagesConfig, "dims", "epochs", "n_train", "n_test")
        | {"dataset": ("mnist", "cifar10"), "seeds": UNSTATED},  # the released code's sizes
        presets={
            "full": {},
            "quick": {
                "n_train": 10_000,
                "n_test": 2_000,
                "epochs": 3,
                "seeds": 2,
                "dims": [0, 2, 4],
                "e_dim_step": 2000,
            },
            "tiny": TINY | {"dims": [0, 1], "e_dim_step": 16, "f_dim_step": 8},
        },  # fmt: skip
        run=run,
        judge=judge,
        selects=("seeds", "dims"),
        estimate=lambda c: f"{2 * c.seeds * len(c.dims)} training runs of {c.epochs} epochs",
        paper_reference={
            "figure": "appendix Sec. 1.2 (not in our copy of the paper; sizes from the code)",
            "claims": [
                "increasing the embedding dimension does not close the gap to hypernetworks"
            ],
        },
    )
)
