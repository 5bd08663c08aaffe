"""Per-sample LoRA from a task id: a frozen ``nn.TransformerEncoder`` classifier whose Linear
layers (attention output, feed-forward) get rank-r deltas generated per sample by a hypernetwork
from the sample's task (``LoRAPrimary`` + ``head="lora"``: T2L-style layer and module-type
embeddings, B = 0 at init), against one shared LoRA trained on the same data.

The synthetic task: sequences of random tokens; task t asks whether token t occurs in the
sequence more often than token t + 1 (the task id is not in the input, so one shared adapter
cannot solve every task). Prints the test accuracy of both.

    python examples/lora_transformer.py            # 400 steps
    python examples/lora_transformer.py --tiny     # seconds
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from hyperlab import HyperModel
from hyperlab.lora import LoRAPrimary


class Classifier(nn.Module):
    """Token embeddings in, a TransformerEncoder, mean pooling, a linear head."""

    def __init__(self, d: int, layers: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))


def batch(n: int, tasks: int, vocab: int, length: int, g: torch.Generator):
    tokens = torch.randint(0, vocab, (n, length), generator=g)
    task = torch.randint(0, tasks, (n,), generator=g)
    count = lambda v: (tokens == v.unsqueeze(1)).sum(1)  # noqa: E731
    y = (count(task) > count(task + 1)).long()
    return tokens, task, y


def train(model: HyperModel, embed: nn.Embedding, cond_of, steps: int, args, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        tokens, task, y = batch(args.batch, args.tasks, args.vocab, args.length, g)
        opt.zero_grad()
        logits = model(embed(tokens).detach(), cond_of(task))
        nn.functional.cross_entropy(logits, y).backward()
        opt.step()
    tokens, task, y = batch(
        2000, args.tasks, args.vocab, args.length, torch.Generator().manual_seed(999)
    )
    with torch.no_grad():
        return float((model(embed(tokens), cond_of(task)).argmax(-1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8)
    ap.add_argument("--length", type=int, default=12)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    if args.tiny:
        args.steps, args.batch, args.d = 10, 16, 16
    torch.manual_seed(0)
    base = Classifier(args.d, 2)
    embed = nn.Embedding(args.vocab, args.d).requires_grad_(False)  # frozen, as the base
    targets = ["encoder.layers.*.self_attn.out_proj", "encoder.layers.*.linear*"]

    def model():
        torch.manual_seed(1)
        g = LoRAPrimary(
            base, (args.length, args.d), targets=targets, rank=args.rank, generate=["head.*"]
        )
        return HyperModel(g, args.tasks, [64], head="lora")

    per_sample = model()
    counts = per_sample.g.counts()
    t0 = time.perf_counter()
    acc_task = train(
        per_sample,
        embed,
        lambda t: nn.functional.one_hot(t, args.tasks).float(),
        args.steps,
        args,
        seed=0,
    )
    seconds = time.perf_counter() - t0
    shared = model()  # one adapter for everyone: the same condition for every sample
    acc_shared = train(
        shared,
        embed,
        lambda t: torch.ones(len(t), args.tasks) / args.tasks,
        args.steps,
        args,
        seed=0,
    )
    print(
        f"frozen base: {counts['frozen_base']:,} weights; generated per sample: "
        f"{counts['lora']:,} LoRA (rank {args.rank}) + {counts['generated_whole']:,} head"
    )
    print(
        f"{args.steps} steps: {1000 * seconds / args.steps:.1f} ms/step; test accuracy: "
        f"per-task LoRA {acc_task:.4f}, one shared LoRA {acc_shared:.4f}"
    )
    print(f"example=lora_transformer metric=test_accuracy value={acc_task:.4f}")


if __name__ == "__main__":
    main()
