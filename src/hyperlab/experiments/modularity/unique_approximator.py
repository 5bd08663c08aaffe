"""Fig. 2 (Assumption 1): two shallow ReLU MLPs (100 hidden) from different initialisations
fitted to a random, untrained conv target (Eq. 5); MSE(f1, f2) against MSE(f1, y) per epoch,
on MNIST and on U[-1, 1]^784 inputs. The assumption holds when the students agree with each
other far better than either matches the target."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyperlab.experiments.base import Experiment, Result, RunContext, register
from hyperlab.experiments.claims import Claim, compare
from hyperlab.experiments.config import ConfigError, param
from hyperlab.experiments.figures import curve_figure
from hyperlab.experiments.modularity.images import LOADERS
from hyperlab.experiments.modularity.sweep import SweepConfig
from hyperlab.experiments.papers import MODULARITY
from hyperlab.experiments.scale import UNSTATED, sizes_of
from hyperlab.experiments.stats import fmt_mean_std, nanmean, nanstd
from hyperlab.train import TrainingDiverged

PAPER_REF = "Fig. 2, Assumption 1"


@dataclass(frozen=True)
class UniqueApproximatorConfig(SweepConfig):
    """Fig. 2: MSE, SGD lr 0.01 momentum 0.5, 50 epochs (Sec. 5); batch 64 (authors' code)."""

    inputs: list[str] = param(["mnist", "uniform"], "input spaces: 'uniform' (U[-1,1]^784) "
                              "or an image dataset", choices=("uniform", *LOADERS))  # fmt: skip
    download: bool = param(False, "download missing data files")
    target_channels: list[int] = param([20, 50], "channels of the target's two convs", min=1)
    hidden: int = param(100, "hidden width of each student", min=1)
    n_train: int | None = param(None, "training images (None: all)", min=1)
    n_test: int = param(10_000, "test inputs", min=1)
    uniform_per_epoch: int = param(10_000, "fresh uniform samples per epoch", min=1)
    momentum: float = param(0.5, "SGD momentum", min=0)
    epochs: int = param(50, "training epochs", min=1)

    def validate(self) -> None:
        if len(self.target_channels) != 2:
            raise ConfigError(f"target_channels: expected two ints, got {self.target_channels}")


def _uniform_(t: Tensor, bound: float, gen: torch.Generator) -> Tensor:
    return t.copy_(torch.rand(t.shape, generator=gen) * (2 * bound) - bound)


class ConvTarget(nn.Module):
    """y(x) = fc1(ReLU(conv2(ReLU(conv1(x))))): conv 10x10 stride 2 (c -> 20 -> 50), fc 10.

    Random and never trained (Eq. 5). PyTorch's default init, drawn from ``generator``.
    """

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], generator):
        super().__init__()
        c, hh, ww = in_shape
        self.conv1 = nn.Conv2d(c, channels[0], 10, stride=2)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 10, stride=2)
        with torch.no_grad():
            probe = self.conv2(self.conv1(torch.zeros(1, c, hh, ww)))
        self.fc1 = nn.Linear(probe.numel(), 10)
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.fc1):
                fan_in = m.weight[0].numel()
                assert m.bias is not None
                _uniform_(m.weight, 1 / math.sqrt(fan_in), generator)
                _uniform_(m.bias, 1 / math.sqrt(fan_in), generator)
        self.requires_grad_(False)
        self.in_shape = tuple(in_shape)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, *self.in_shape)
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc1(h.flatten(1))


class StudentPair(nn.Module):
    """Two shallow ReLU MLPs d-100-10 from different initialisations (rows unit-norm at init,
    as in the authors' code). Trained together on the sum of their losses, which gives each
    exactly its own gradient: equivalent to two independent runs on the same batches."""

    def __init__(self, d: int, hidden: int, generators: Sequence[torch.Generator]):
        super().__init__()
        self.nets = nn.ModuleList()
        for gen in generators:
            first, last = nn.Linear(d, hidden), nn.Linear(hidden, 10)
            net = nn.Sequential(first, nn.ReLU(), last)
            with torch.no_grad():
                for lin in (first, last):
                    bound = 1 / math.sqrt(lin.in_features)
                    _uniform_(lin.weight, bound, gen)
                    _uniform_(lin.bias, bound, gen)
                    lin.weight.div_(lin.weight.norm(dim=1, keepdim=True))
            self.nets.append(net)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return self.nets[0](x), self.nets[1](x)


def _inputs(ctx: RunContext[UniqueApproximatorConfig], space: str, s: int):
    """Train data (dict for fit), its transform, fixed test inputs, input shape."""
    cfg = ctx.config
    if space == "uniform":
        shape = (1, 28, 28)

        def transform(batch, gen):
            m = batch["index"].shape[0]
            x = torch.rand(m, *shape, generator=gen) * 2 - 1
            return {"x": x.to(batch["index"].device)}

        test = torch.rand(cfg.n_test, *shape, generator=ctx.generator("uniform", s))
        return {"index": torch.arange(cfg.uniform_per_epoch)}, transform, test * 2 - 1, shape
    loader = LOADERS[space]
    train, _ = loader("train", data_dir=ctx.data_dir, download=cfg.download)
    test, _ = loader("test", data_dir=ctx.data_dir, download=cfg.download)
    mean, std = 0.1307, 0.3081  # the authors normalise every dataset with MNIST's constants

    def prep(images: Tensor, n: int | None) -> Tensor:
        x = images[:n] if n else images
        x = x.float().div(255.0)
        x = x.unsqueeze(1) if x.ndim == 3 else x
        return (x - mean) / std

    tr, te = prep(train, cfg.n_train), prep(test, cfg.n_test)
    return {"x": tr}, None, te, tuple(tr.shape[1:])


def _train_pair(
    ctx: RunContext[UniqueApproximatorConfig], space: str, s: int
) -> dict[str, list[float]]:
    """One seed on one input space: the three distances per epoch (NaN if it diverged)."""
    cfg = ctx.config
    train, transform, test_x, shape = _inputs(ctx, space, s)
    target = ConvTarget(shape, cfg.target_channels, ctx.generator("target", space, s))
    target = target.to(ctx.device)
    test_x = test_x.to(ctx.device)
    with torch.no_grad():
        test_y = torch.cat([target(test_x[i : i + 1000]) for i in range(0, len(test_x), 1000)])

    def loss(model, batch):
        y = target(batch["x"])
        a, b = model(batch["x"])
        return nn.functional.mse_loss(a, y) + nn.functional.mse_loss(b, y)

    def evaluate(model):
        a, b = model(test_x)
        mse = nn.functional.mse_loss
        return {"f1_f2": mse(a, b), "f1_y": mse(a, test_y), "f2_y": mse(b, test_y)}

    gens = [ctx.generator("student", space, s, j) for j in (1, 2)]
    model = StudentPair(math.prod(shape), cfg.hidden, gens)
    keys = ("f1_f2", "f1_y", "f2_y")
    try:
        hist = ctx.fit(model, loss, train, key=(space, s), epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                       evaluate=evaluate, transform=transform)  # fmt: skip
        return {k: [float(v) for v in hist.series(k)] for k in keys}
    except TrainingDiverged:
        return {k: [math.nan] * cfg.epochs for k in keys}


def run(ctx: RunContext[UniqueApproximatorConfig]) -> Result:
    """Compute the per-epoch distances for every space and seed, summarise, draw Fig. 2."""
    cfg = ctx.config
    spaces = list(cfg.inputs)
    metrics: dict[str, Any] = {"inputs": spaces, "epochs": list(range(1, cfg.epochs + 1))}
    figures, comparison = [], []
    bar = tqdm(total=cfg.seeds * len(spaces), desc=ctx.name, disable=not ctx.progress)
    for space in spaces:
        curves: dict[str, list[list[float]]] = {"f1_f2": [], "f1_y": [], "f2_y": []}
        for s in range(cfg.seeds):
            for key, values in _train_pair(ctx, space, s).items():
                curves[key].append(values)  # [seed][epoch]
            bar.update()
        for key, rows in curves.items():
            by_epoch = [list(col) for col in zip(*rows, strict=True)]  # [epoch][seed]
            metrics[f"{space}_{key}_mse"] = [nanmean(c) for c in by_epoch]
            metrics[f"{space}_{key}_mse_std"] = [nanstd(c) for c in by_epoch]
            metrics[f"{space}_{key}_mse_per_seed"] = rows
        d12, d1y = metrics[f"{space}_f1_f2_mse"], metrics[f"{space}_f1_y_mse"]
        metrics[f"{space}_ratio_f1_f2_over_f1_y"] = [a / b for a, b in zip(d12, d1y, strict=True)]
        for key, label in (("f1_f2", "MSE(f1, f2)"), ("f1_y", "MSE(f1, y)")):
            comparison.append((
                f"{space}, last epoch: {label}", "qualitative (f1-f2 well below f1-y)",
                fmt_mean_std(metrics[f"{space}_{key}_mse"][-1],
                             metrics[f"{space}_{key}_mse_std"][-1]),
            ))  # fmt: skip
        per_epoch = {
            "||f1 - f2|| (MSE)": [list(c) for c in zip(*curves["f1_f2"], strict=True)],
            "||f1 - y|| (MSE)": [list(c) for c in zip(*curves["f1_y"], strict=True)],
        }
        figures.append(curve_figure(
            ctx, f"fig2_{space}", metrics["epochs"], per_epoch, xlabel="epoch", ylabel="MSE",
            title=f"Fig. 2: Assumption 1, {space} inputs ({ctx.preset})",
        ))  # fmt: skip
    bar.close()
    return Result(metrics=metrics, claims=judge(cfg, metrics), figures=figures,
                  comparison=comparison)  # fmt: skip


def judge(cfg: UniqueApproximatorConfig, metrics: dict) -> list[Claim]:
    """Fig. 2: at the last epoch the two students are significantly closer to each other than
    to the target (per seed, over seeds), for every input space."""
    claims = []
    for space in metrics["inputs"]:
        last = [r[-1] if r else math.nan for r in metrics[f"{space}_f1_f2_mse_per_seed"]]
        to_y = [r[-1] if r else math.nan for r in metrics[f"{space}_f1_y_mse_per_seed"]]
        verdict = compare(last, to_y, names=("f1_f2", "f1_y"))
        ratio = metrics[f"{space}_ratio_f1_f2_over_f1_y"]
        claims.append(Claim.of(
            f"{space}: at the last epoch ||f1 - f2||^2 is significantly smaller than "
            "||f1 - y||^2", PAPER_REF, verdict, ratio_epoch_1=ratio[0], ratio_last_epoch=ratio[-1],
        ))  # fmt: skip
    return claims


register(
    Experiment(
        name="modularity-unique-approximator",
        paper=MODULARITY,
        reproduces="Fig. 2",
        summary="Assumption 1: two shallow ReLU MLPs (100 hidden) from different inits fitted "
        "to a random conv target; MSE(f1, f2) vs MSE(f1, y) per epoch (MNIST, U[-1,1]^784).",
        config_class=UniqueApproximatorConfig,
        paper_sizes=sizes_of(UniqueApproximatorConfig, "epochs", "n_train")
        | {"inputs": ["mnist", "cifar10", "uniform"], "seeds": UNSTATED},  # Fig. 2a-c
        presets={
            "full": {},
            "quick": {"n_train": 10_000, "n_test": 2_000, "epochs": 20, "seeds": 2},
            "tiny": {
                "n_train": 256,
                "n_test": 128,
                "uniform_per_epoch": 256,
                "epochs": 2,
                "seeds": 2,
            },
        },  # fmt: skip
        run=run,
        judge=judge,
        estimate=lambda c: (
            f"{c.seeds * len(c.inputs)} training runs (two students each) of {c.epochs} epochs"
        ),
        paper_reference={
            "figure": "Fig. 2a (MNIST), 2b (CIFAR-10), 2c ([-1, 1]^{28x28}); no numbers",
            "claims": [
                "the distance between f1 and f2 is significantly smaller than their "
                "distances from y"
            ],
            "protocol": "MSE, SGD lr 0.01 momentum 0.5, 50 epochs (Sec. 5); batch 64, 10,000 "
            "fresh uniform samples per epoch, unit-norm rows at init (authors' code)",
        },
    )
)
