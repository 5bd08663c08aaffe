"""Five seeds side by side (``hyperlab.train.fit_seeds``) against the same five one after another
(``hyperlab.train.fit``), on the models of the two decisive sweeps, at one thread.

Models, built by the experiments' own builders so that they are the ones the runs train:

* Fig. 3 (modularity rotation): the authors' f of depth k = 5 (k + 2 layers of width 100) onto
  g 784-10-12 without biases, batch 64, SGD lr 0.01;
* Fig. 2 (infinite width): the released f (4 layers of 200, a 100-wide bottleneck) onto a g of
  depth 3 and width 100, batch 100, SGD lr 0.01;
* Fig. 1a at d = 20 (``make demo``): f of depth k = 5 (width 100) onto g 20-10-1, batch 200,
  MSE.

Each contender trains the same seeds on the same per-seed data for the same steps (random
MNIST-shaped inputs; the speed does not depend on the values), with the same threads and
allocator. Timed as the best of ``--repeat`` whole trainings (wall clock, CPU: no device
synchronisation is needed; on CUDA it synchronises). The last line is
``speedup_batched_seeds=<x>``: the Fig. 3 and Fig. 2 models' smaller ratio (the issue's
measure); each model's ratio is printed beside it. ``--keep-memory`` runs both contenders
inside ``keep_freed_memory()``, as Fig. 2 trains.

    .venv/bin/python benchmarks/batched_seeds.py
    .venv/bin/python benchmarks/batched_seeds.py --models fig2 --keep-memory
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time

import torch
from torch import nn

from hyperlab.experiments.infinite_width.dynamics import DynamicsConfig, build_model
from hyperlab.experiments.modularity.images import rotation_builders
from hyperlab.experiments.modularity.rotation import RotationConfig, hidden_widths
from hyperlab.experiments.modularity.synthetic_depth import D20, SyntheticDepthConfig
from hyperlab.experiments.modularity.synthetic_depth import builders as synthetic_builders
from hyperlab.runtime import keep_freed_memory, num_threads, resolve_device, synchronize
from hyperlab.train import TrainConfig, fit, fit_seeds

BATCH = {"fig3": 64, "fig2": 100, "fig1a": 200}  # each experiment's batch size


def _models(which: str, seeds: int) -> list[nn.Module]:
    gens = [torch.Generator().manual_seed(s) for s in range(seeds)]
    if which == "fig1a":
        cfg1 = SyntheticDepthConfig().replace(D20)
        return [synthetic_builders(cfg1)["hypernetwork"](5, g) for g in gens]
    if which == "fig3":
        cfg = RotationConfig(f_arch="authors", init="standard", biases=["f", "e", "q"])
        build = rotation_builders(cfg, f_hidden=lambda k: hidden_widths(cfg, int(k)))
        return [build["hypernetwork"](5, g) for g in gens]
    return [build_model(DynamicsConfig(), 784, 3, 100, g) for g in gens]


def _data(which: str, seed: int, n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    d = 20 if which == "fig1a" else 784
    y = torch.randn(n, generator=g) if which == "fig1a" else torch.randint(0, 12, (n,), generator=g)
    return {"x": torch.randn(n, d, generator=g), "cond": torch.randn(n, d, generator=g), "y": y}


def _loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(batch["x"], batch["cond"])
    if batch["y"].is_floating_point():  # Fig. 1a: regression
        return nn.functional.mse_loss(out.squeeze(-1), batch["y"])
    return nn.functional.cross_entropy(out, batch["y"])


def _one_by_one(which: str, seeds: int, datas: list, cfgs: list, dev: torch.device) -> None:
    for m, d, c in zip(_models(which, seeds), datas, cfgs, strict=True):
        fit(m, _loss, d, c, device=dev)


def _side_by_side(which: str, seeds: int, datas: list, cfgs: list, dev: torch.device) -> None:
    fit_seeds(_models(which, seeds), _loss, datas, cfgs, device=dev)


def _time(run, device: torch.device, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        synchronize(device)
        t0 = time.perf_counter()
        run()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--keep-memory", action="store_true",
                   help="both contenders inside keep_freed_memory(), as Fig. 2 trains")  # fmt: skip
    p.add_argument("--models", default="fig3,fig2,fig1a", help="which models, comma-separated")
    a = p.parse_args()
    dev = resolve_device(a.device)
    ratios = {}
    models = [m for m in a.models.split(",") if m]
    unknown = sorted(set(models) - set(BATCH))
    if unknown:
        p.error(f"--models: expected names from {sorted(BATCH)}, got {unknown}")
    memory = keep_freed_memory() if a.keep_memory else contextlib.nullcontext()
    with num_threads(a.threads), memory:
        print(
            f"device {dev}, {torch.get_num_threads()} thread(s), {a.seeds} seeds, "
            f"{a.steps} steps each, freed memory {'kept' if a.keep_memory else 'returned'}"
        )
        for which in models:
            batch = BATCH[which]
            datas = [{k: v.to(dev) for k, v in _data(which, s, batch * a.steps).items()}
                     for s in range(a.seeds)]  # fmt: skip
            cfgs = [TrainConfig(epochs=1, batch_size=batch, lr=0.01, seed=s, progress=False)
                    for s in range(a.seeds)]  # fmt: skip

            args = (which, a.seeds, datas, cfgs, dev)
            seq = _time(functools.partial(_one_by_one, *args), dev, a.repeat)
            bat = _time(functools.partial(_side_by_side, *args), dev, a.repeat)
            steps = a.seeds * a.steps
            print(f"{which}: one after another {1e3 * seq / steps:.2f} ms/seed-step, "
                  f"side by side {1e3 * bat / steps:.2f} ms/seed-step, "
                  f"ratio {seq / bat:.2f}")  # fmt: skip
            ratios[which] = seq / bat
    decisive = [ratios[m] for m in ("fig3", "fig2") if m in ratios]
    print(f"speedup_batched_seeds={min(decisive, default=float('nan')):.2f} "
          + " ".join(f"{m}={r:.2f}" for m, r in ratios.items()))  # fmt: skip


if __name__ == "__main__":
    main()
