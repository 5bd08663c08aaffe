"""Norm layers in a generated network: a convnet with BatchNorm and LayerNorm as the primary of a
hypernetwork that generates a weight set per condition. Shows (1) the norm parameters' roles
(scale, shift) and that generated scales start at the module's own init, 1; (2) BatchNorm in
train mode normalises each weight set's samples with that set's batch statistics, exactly as
running the module once per weight set would; (3) running statistics shared by every weight set
or kept per condition (continual learning's per-task statistics), used in eval mode and saved
in ``state_dict``.

    python examples/norm_layers.py          # the same at any size: it checks, it does not train
    python examples/norm_layers.py --tiny
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.func import functional_call

from hyperlab import HyperModel
from hyperlab.modules import ModulePrimary


def convnet(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.LayerNorm(16 * width),
        nn.Linear(16 * width, 10),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--tiny", action="store_true", help="width 4")
    a = ap.parse_args()
    if a.tiny:
        a.width = 4
    torch.manual_seed(0)
    net = convnet(a.width)
    conditions, per_condition = 4, 8  # 4 weight sets, 8 images each
    cond = torch.randn(conditions, 16)
    x = torch.randn(conditions, per_condition, 1, 12, 12)

    # 1. roles: a norm's weight is a scale, its bias a shift; generated ones start at 1 and 0
    model = HyperModel(ModulePrimary(net, in_shape=(1, 12, 12)), cond_features=16, hidden=[64])
    for spec in model.g.layout.specs:
        print(f"{spec.name:10s} {str(spec.shape):16s} {spec.role}")
    theta = {k: v.detach() for k, v in model.f(cond).items()}  # {name: (4, *shape)}
    scale = theta["1.weight"]
    print(f"generated BatchNorm scales at init: mean {float(scale.mean()):.3f} (the module's: 1)")

    # 2. train mode: each weight set's images normalised with their own batch statistics
    model.train()
    out = model(x, cond)  # (4, 8, 10), one call for every weight set
    loop_net = convnet(a.width).train()  # the reference: the module run once per weight set
    ref = torch.stack(
        [
            functional_call(loop_net, {k: v[i] for k, v in theta.items()}, (x[i],))
            for i in range(conditions)
        ]
    )
    err = float((out - ref).abs().max().detach())
    print(f"batched vs once-per-weight-set: max |difference| {err:.2e}")
    assert err < 1e-4, err

    # 3. running statistics: shared (updated in order) or one set per condition id
    g = ModulePrimary(convnet(a.width), (1, 12, 12), bn_stats="per_condition", n_conditions=4)
    per_task = HyperModel(g, cond_features=16, hidden=[64]).train()
    ids = torch.tensor([2, 0, 3, 1])  # the condition (task) id of each weight set
    with torch.no_grad():
        per_task(x, cond, condition_ids=ids)
        theta = per_task.f(cond)
    means = g.state_dict()["1__running_mean"]  # (4, width): one row per condition id
    gap = 0.0
    for i in range(conditions):  # each row is what a module run on that set alone keeps
        alone = convnet(a.width).train()
        with torch.no_grad():
            functional_call(alone, {k: v[i] for k, v in theta.items()}, (x[i],))
        gap = max(gap, float((means[int(ids[i])] - alone[1].running_mean).abs().max()))
    print(f"per-condition running means vs a module run per condition: max |difference| {gap:.2e}")
    assert gap < 1e-5, gap
    per_task.eval()
    with torch.no_grad():
        logits = per_task(x, cond, condition_ids=ids)  # eval: each condition's own statistics
    print(f"eval-mode logits {tuple(logits.shape)}; the statistics are in state_dict: "
          f"{sorted(k for k in g.state_dict() if k.startswith('1__'))}")  # fmt: skip
    err = max(err, gap)
    print(f"example=norm_layers metric=max_abs_difference value={err:.3e}")


if __name__ == "__main__":
    main()
