"""Fig. 1b: test MSE as the embedding dimension grows (f = d_I-100-100i-N_g, e = d_I-100-100-1000i).

Same synthetic target and training as Fig. 1a (`.synthetic`); three layers each, no biases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.experiments.claims import Claim
from hyperlab.experiments.config import param
from hyperlab.experiments.modularity.sweep import counts_recorder, sweep
from hyperlab.experiments.modularity.synthetic import (
    PAPER_TARGET,
    SyntheticConfig,
    synthetic_claims,
    synthetic_result,
    synthetic_task,
)
from hyperlab.experiments.papers import MODULARITY
from hyperlab.experiments.scale import sizes_of
from hyperlab.hypernet import EmbeddingModel, HyperModel
from hyperlab.primary import MLP

PAPER_REF = "Fig. 1b, Sec. 5"


@dataclass(frozen=True)
class SyntheticEmbeddingDimConfig(SyntheticConfig):
    """Fig. 1b: the embedding-dimension steps i and their sizes (d_x = d_I = 100)."""

    d_x: int = param(100, "dimension of x (g's input)", min=1)
    d_i: int = param(100, "dimension of I (f's and e's input)", min=1)
    dims: list[int] = param(list(range(1, 9)), "steps i of the embedding dimension", min=1)
    f_dim_step: int = param(100, "f's last hidden width is f_dim_step * i", min=1)
    e_dim_step: int = param(1000, "e's output (the embedding) is e_dim_step * i", min=1)


def builders(cfg: SyntheticEmbeddingDimConfig):
    """f = d_I-100-100i-N_g, e = d_I-100-100-1000i (three layers each; init, biases: config)."""
    d_x, d_i, gh = cfg.d_x, cfg.d_i, cfg.g_hidden
    w, fw, ew = cfg.width, cfg.f_dim_step, cfg.e_dim_step

    def hyper(i: int, gen: torch.Generator) -> nn.Module:
        g = MLP([d_x, gh, 1], bias=cfg.bias("g"))
        return HyperModel(g, d_i, [w, fw * i], bias=cfg.bias("f"), init=cfg.init, generator=gen)

    def emb(i: int, gen: torch.Generator) -> nn.Module:
        return EmbeddingModel(d_x, d_i, ew * i, [w, w], [gh], 1, bias=cfg.bias("e"),
                              q_bias=cfg.bias("q"), generator=gen)  # fmt: skip

    return {"hypernetwork": hyper, "embedding": emb}


def run(ctx: RunContext[SyntheticEmbeddingDimConfig]) -> Result:
    """Compute the sweep over i, then summarise and draw Fig. 1b."""
    cfg = ctx.config
    steps = list(cfg.dims)
    counts: list[dict] = []
    metrics, table = sweep(
        ctx,
        conventions=cfg,
        tuning=cfg,
        values=steps,
        make_task=lambda s: synthetic_task(ctx, s),
        builders=builders(cfg),
        on_model=counts_recorder(counts, "i"),
    )
    metrics = {
        "dims": steps,
        "f_embedding_dims": [cfg.f_dim_step * i for i in steps],
        "e_embedding_dims": [cfg.e_dim_step * i for i in steps],
        **metrics,
        "parameter_counts": counts,
    }
    return synthetic_result(
        ctx, "i", steps, metrics, table, stem="fig1b_embedding_dim", claims=judge(cfg, metrics),
        xlabel=f"i (embedding dim: {cfg.f_dim_step}i for f, {cfg.e_dim_step}i for e)",
        title=f"Fig. 1b: d_x = d_I = {cfg.d_x} ({ctx.preset})",
    )  # fmt: skip


def judge(cfg: SyntheticEmbeddingDimConfig, metrics: dict) -> list[Claim]:
    """Fig. 1b's sentences: the embedding does not improve as its dimension grows, and does
    worse than the hypernetwork at every dimension."""
    return synthetic_claims(metrics["dims"], metrics, what="embedding dimension i",
                            paper_ref=PAPER_REF, claim_kw={"h_improves": False})  # fmt: skip


register(
    Experiment(
        name="modularity-synthetic-embedding-dim",
        paper=MODULARITY,
        reproduces="Fig. 1b",
        summary="Test MSE on y(x, I) = <x, h(I)> as the embedding dimension grows: f = "
        "100-100-100i-N_g, e = 100-100-100-1000i, g, q: d_in-10-1 (d_x = d_I = 100).",
        config_class=SyntheticEmbeddingDimConfig,
        paper_sizes=sizes_of(SyntheticEmbeddingDimConfig, "d_x", "d_i", "n_train", "dims")
        | {"seeds": 100}  # Fig. 1's caption: error bars are SD over 100 repetitions
        | PAPER_TARGET,
        presets={
            "full": {},
            # d = 20, embedding dims scaled by 1/5 like d_x (see the depth experiment)
            "quick": {
                "d_x": 20,
                "d_i": 20,
                "f_dim_step": 20,
                "e_dim_step": 200,
                "dims": [1, 2, 4, 8],
                "n_test": 2_000,
                "epochs": 15,
                "seeds": 2,
            },
            "tiny": {
                "d_x": 8,
                "d_i": 8,
                "width": 16,
                "dims": [1, 2],
                "f_dim_step": 8,
                "e_dim_step": 16,
                "n_train": 400,
                "n_test": 200,
                "batch_size": 50,
                "epochs": 2,
                "seeds": 2,
            },
        },  # fmt: skip
        run=run,
        judge=judge,
        selects=("seeds", "dims"),
        estimate=lambda c: (
            f"{2 * c.seeds * len(c.dims)} training runs of {c.epochs} epochs "
            f"on {c.n_train:,} samples, d = {c.d_x}"
        ),
        paper_reference={
            "figure": "Fig. 1b (no numbers in the text)",
            "claims": [
                "the embedding method's error does not improve as the embedding dimension grows",
                "the embedding method is much worse than the hypernetwork",
            ],
            "sizes": "N_g = 1010, N_q = 10^4(i+1)+10 (paper; with d_x = 100 it is "
            "(100 + 1000i)·10 + 10), N_f = 10^4+10^4 i+10^5 i, N_e = 2·10^4+10^5 i",
        },
    )
)
