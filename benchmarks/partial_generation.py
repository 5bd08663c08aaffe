"""Partial generation, one training step: a shared convolutional backbone and a classifier head
generated per condition (``examples/partial_head.py``'s model: 5 conditions x 64 MNIST-sized
images, hypernetwork 5-32-head), three ways:

* hyperlab: ``HyperModel(ModulePrimary(net, (1, 28, 28), generate=["head.*"]), 5, [32])``;
* hand-written ``torch.func``: an MLP onto the head's flat parameters and
  ``vmap(functional_call)`` over the conditions, the backbone's parameters closed over;
* hyperlight 0.0.5 (``hypernetize(net, modules=[net.head])`` and ``HyperNet``): its API runs one
  weight set per forward (``using_externals``), so a loop over the conditions.

Same widths, Adam 1e-3, float32, threads (``--threads``, default 1); the median of
``--repeat`` timed steps after ``--warmup``. hyperlight is an optional peer
(``pip install hyperlight==0.0.5``); absent, its line says so. The last line is
``speedup_vs_hyperlight=<x>`` (or ``speedup_vs_handwritten=<x>`` without hyperlight).

    .venv/bin/python benchmarks/partial_generation.py
"""

from __future__ import annotations

import argparse
import copy
import importlib.util

import torch
from torch import nn
from torch.func import functional_call

from hyperlab import HyperModel
from hyperlab.modules import ModulePrimary
from hyperlab.runtime import cpu_model, median_seconds, num_threads, resolve_device


class Net(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _median_ms(step, dev: torch.device, warmup: int, repeat: int) -> float:
    return 1000 * median_seconds(step, dev, repeats=repeat, warmup=warmup)


def _hyperlab(net, cond, x, y, dev):
    model = HyperModel(
        ModulePrimary(net, (1, 28, 28), generate=["head.*"]), cond.shape[1], [32]
    ).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x, cond).reshape(-1, 2), y.reshape(-1))
        loss.backward()
        opt.step()

    return step


def _handwritten(net, cond, x, y, dev):
    head_shapes = {n: p.shape for n, p in net.named_parameters() if n.startswith("head.")}
    sizes = [s.numel() for s in head_shapes.values()]
    f = nn.Sequential(nn.Linear(cond.shape[1], 32), nn.ReLU(), nn.Linear(32, sum(sizes))).to(dev)
    shared = {n: p for n, p in net.named_parameters() if not n.startswith("head.")}
    opt = torch.optim.Adam([*f.parameters(), *shared.values()], lr=1e-3)

    def one(flat, xb):
        parts = flat.split(sizes)
        head = {n: t.view(s) for (n, s), t in zip(head_shapes.items(), parts, strict=True)}
        return functional_call(net, {**shared, **head}, (xb,))

    def step():
        opt.zero_grad()
        out = torch.vmap(one)(f(cond), x)
        nn.functional.cross_entropy(out.reshape(-1, 2), y.reshape(-1)).backward()
        opt.step()

    return step


def _hyperlight(net, cond, x, y, dev):
    import hyperlight as hl

    model = hl.hypernetize(net, modules=[net.head])
    hnet = hl.HyperNet(
        input_shapes={"c": (cond.shape[1],)},
        output_shapes=model.external_shapes(),
        hidden_sizes=[32],
    ).to(dev)
    opt = torch.optim.Adam([*hnet.parameters(), *model.parameters()], lr=1e-3)

    def step():
        opt.zero_grad()
        losses = []
        for i in range(cond.shape[0]):  # hyperlight: one weight set per forward
            with model.using_externals(hnet(c=cond[i])):
                losses.append(nn.functional.cross_entropy(model(x[i]), y[i]))
        torch.stack(losses).mean().backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conditions", type=int, default=5)
    ap.add_argument("--per-condition", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    c, n = args.conditions, args.per_condition
    g = torch.Generator().manual_seed(0)
    cond = torch.eye(c).to(dev)
    x = torch.rand(c, n, 1, 28, 28, generator=g).to(dev)
    y = torch.randint(0, 2, (c, n), generator=g).to(dev)
    torch.manual_seed(0)
    base = Net().to(dev)
    print(
        f"cpu: {cpu_model()}; device {dev}; torch {torch.__version__}; threads {args.threads}; "
        f"float32; {c} conditions x {n} images, generated head of "
        f"{sum(p.numel() for p in base.head.parameters())} weights"
    )
    have_hl = importlib.util.find_spec("hyperlight") is not None
    with num_threads(args.threads if dev.type == "cpu" else None):
        times = {}
        for name, make in (
            ("hyperlab", _hyperlab),
            ("hand-written vmap", _handwritten),
            ("hyperlight (loop)", _hyperlight),
        ):
            if name.startswith("hyperlight") and not have_hl:
                print("hyperlight is not installed (pip install hyperlight==0.0.5): skipped")
                continue
            step = make(copy.deepcopy(base), cond, x, y, dev)
            times[name] = _median_ms(step, dev, args.warmup, args.repeat)
        ours = times["hyperlab"]
        for name, ms in times.items():
            print(f"{name:20s} {ms:8.2f} ms/step  ratio to hyperlab {ms / ours:.2f}x")
    if "hyperlight (loop)" in times:
        print(f"speedup_vs_hyperlight={times['hyperlight (loop)'] / ours:.2f}")
    print(f"speedup_vs_handwritten={times['hand-written vmap'] / ours:.2f}")


if __name__ == "__main__":
    main()
