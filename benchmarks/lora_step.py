"""Per-sample LoRA, one training step: a frozen 2-layer ``nn.TransformerEncoder`` classifier
(4 heads, d = 32 as in ``examples/lora_transformer.py`` and d = 256) whose attention-output and
feed-forward Linears get rank-4 deltas generated per sample from a task one-hot, batch 64:

* hyperlab: ``HyperModel(LoRAPrimary(base, ..., targets, rank=4, generate=["head.*"]), ...,
  head="lora")`` (B·A never formed for the feed-forward Linears);
* hand-written: what a user writes without it: an MLP 4-64 with one linear head per target
  layer onto [A; B], W = W₀ + B·A formed per sample, ``vmap(functional_call)`` over samples.

Same widths (generator hidden 64), Adam 3e-3, float32, threads (``--threads``, default 1); the
median of ``--repeat`` timed steps after ``--warmup``. The last line is
``speedup_vs_handwritten=<x>`` at the last width.

    .venv/bin/python benchmarks/lora_step.py
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from hyperlab import HyperModel
from hyperlab.lora import LoRAPrimary
from hyperlab.runtime import cpu_model, median_seconds, num_threads, resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from lora_transformer import Classifier  # noqa: E402  (the example's model)

TARGETS = ["encoder.layers.*.self_attn.out_proj", "encoder.layers.*.linear*"]


def _median_ms(step, dev: torch.device, warmup: int, repeat: int) -> float:
    return 1000 * median_seconds(step, dev, repeats=repeat, warmup=warmup)


def _hyperlab(base, x, cond, y, rank):
    g = LoRAPrimary(base, tuple(x.shape[1:]), targets=TARGETS, rank=rank, generate=["head.*"])
    model = HyperModel(g, cond.shape[1], [64], head="lora")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x, cond), y).backward()
        opt.step()

    return step


def _handwritten(base, x, cond, y, rank):
    mods = dict(base.named_modules())
    layers = [n for n, m in mods.items() if isinstance(m, nn.Linear) and n != "head"]
    shapes = {n: (mods[n].out_features, mods[n].in_features) for n in layers}
    trunk = nn.Sequential(nn.Linear(cond.shape[1], 64), nn.ReLU())
    heads = nn.ModuleDict({n.replace(".", "_"): nn.Linear(64, rank * (o + i))
                           for n, (o, i) in shapes.items()})  # fmt: skip
    head_gen = nn.Linear(64, sum(p.numel() for p in base.head.parameters()))
    with torch.no_grad():  # the B rows start at zero, as LoRA does
        for n, (_o, i) in shapes.items():
            heads[n.replace(".", "_")].weight[rank * i :].zero_()
            heads[n.replace(".", "_")].bias[rank * i :].zero_()
    frozen = {n: p.detach() for n, p in base.named_parameters()}
    params = [*trunk.parameters(), *heads.parameters(), *head_gen.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    hw, hb = base.head.weight.shape, base.head.bias.shape

    def one(e, xb):
        state = dict(frozen)
        for n, (o, i) in shapes.items():
            ab = heads[n.replace(".", "_")](e)
            a, b = ab[: rank * i].view(rank, i), ab[rank * i :].view(o, rank)
            state[f"{n}.weight"] = frozen[f"{n}.weight"] + b @ a
        flat = head_gen(e)
        state["head.weight"] = flat[: hw.numel()].view(hw)
        state["head.bias"] = flat[hw.numel() :].view(hb)
        return functional_call(base, state, (xb.unsqueeze(0),)).squeeze(0)

    def step():
        opt.zero_grad()
        torch.backends.mha.set_fastpath_enabled(False)  # the fused path skips functional_call
        try:
            out = torch.vmap(one)(trunk(cond), x)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
        nn.functional.cross_entropy(out, y).backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--d", type=int, nargs="+", default=[32, 256], help="model widths")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    print(
        f"cpu: {cpu_model()}; device {dev}; torch {torch.__version__}; threads {args.threads}; "
        f"float32; batch {args.batch} (one LoRA per sample), rank {args.rank}"
    )
    ratio = float("nan")
    for d in args.d:
        torch.manual_seed(0)
        base = Classifier(d, 2).to(dev)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch, 12, d, generator=g).to(dev)
        task = torch.randint(0, 4, (args.batch,), generator=g)
        cond = nn.functional.one_hot(task, 4).float().to(dev)
        y = torch.randint(0, 2, (args.batch,), generator=g).to(dev)
        with num_threads(args.threads if dev.type == "cpu" else None):
            ours = _median_ms(
                _hyperlab(copy.deepcopy(base), x, cond, y, args.rank), dev, args.warmup, args.repeat
            )
            hand = _median_ms(
                _handwritten(copy.deepcopy(base), x, cond, y, args.rank),
                dev,
                args.warmup,
                args.repeat,
            )
        ratio = hand / ours
        print(
            f"d = {d:4d}: hyperlab (head='lora') {ours:8.2f} ms/step; hand-written "
            f"(W formed) {hand:8.2f} ms/step; ratio {ratio:.2f}x"
        )
    print(f"speedup_vs_handwritten={ratio:.2f}")


if __name__ == "__main__":
    main()
