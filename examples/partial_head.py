"""Partial generation: a convolutional backbone shared by every task (an ordinary, trained
parameter set) and a classifier head generated per task by a hypernetwork from the task's
one-hot id (``ModulePrimary(..., generate=["head.*"])``), on the five SplitMNIST tasks trained
jointly. Prints the parameter counts of both parts and the mean test accuracy over the tasks.

    python examples/partial_head.py            # 600 steps
    python examples/partial_head.py --tiny     # seconds
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from hyperlab import HyperModel
from hyperlab.data import load_mnist
from hyperlab.data.tasks import split_tasks
from hyperlab.modules import ModulePrimary


class Net(nn.Module):
    def __init__(self, width: int):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64, help="images per task per step")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    if args.tiny:
        args.steps, args.batch, args.width = 20, 16, 4
    torch.manual_seed(0)
    train = split_tasks(*load_mnist("train", args.data_dir))
    test = split_tasks(*load_mnist("test", args.data_dir))
    n_tasks = len(train)
    g = ModulePrimary(Net(args.width), (1, 28, 28), generate=["head.*"])
    model = HyperModel(g, n_tasks, [32])
    counts = g.counts()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # the backbone trains with it
    ids = torch.eye(n_tasks)  # every task's condition: its one-hot id
    t0 = time.perf_counter()
    for _ in range(args.steps):
        idx = [torch.randint(0, len(t["y"]), (args.batch,)) for t in train]
        x = torch.stack([t["x"][i] for t, i in zip(train, idx, strict=True)]).view(
            n_tasks, args.batch, 1, 28, 28
        )
        y = torch.stack([t["y"][i] for t, i in zip(train, idx, strict=True)])
        opt.zero_grad()
        logits = model(x, ids)  # (tasks, batch, 2): each task's head on its own images
        loss = nn.functional.cross_entropy(logits.reshape(-1, 2), y.reshape(-1))
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    model.eval()
    accs = []
    with torch.no_grad():
        for t, task in enumerate(test):
            n = len(task["y"]) if not args.tiny else 200
            logits = model(task["x"][:n].view(1, n, 1, 28, 28), ids[t : t + 1])[0]
            accs.append(float((logits.argmax(-1) == task["y"][:n]).float().mean()))
    mean = sum(accs) / len(accs)
    hyper = sum(p.numel() for p in model.f.parameters()) - counts["shared_trainable"]
    print(
        f"generated per task: {counts['generated']:,} (the head); shared backbone: "
        f"{counts['shared_trainable']:,} trained, {counts['shared_frozen']:,} frozen; "
        f"hypernetwork: {hyper:,}"
    )
    print(
        f"{args.steps} steps in {seconds:.1f} s ({1000 * seconds / args.steps:.1f} ms/step); "
        f"test accuracy per task: {', '.join(f'{a:.4f}' for a in accs)}"
    )
    print(f"example=partial_head metric=mean_test_accuracy value={mean:.4f}")


if __name__ == "__main__":
    main()
