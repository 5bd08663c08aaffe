"""Continual learning with a task-conditioned hypernetwork (von Oswald et al. 2020) on the
SplitMNIST tasks: the hypernetwork's output regulariser against plain fine-tuning of the same
target, every task's test accuracy after every task, and the task inferred by entropy (CL3).

    python examples/continual_tasks.py            # 5 tasks, 500 steps each
    python examples/continual_tasks.py --tiny     # 3 tasks, seconds
"""

from __future__ import annotations

import argparse

import torch

from hyperlab import MLP
from hyperlab.continual import ContinualConfig, FineTune, Hypernet, TaskConditioned, fit_tasks
from hyperlab.data import load_mnist
from hyperlab.data.tasks import split_tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    if a.tiny:
        a.tasks, a.steps = 3, 60
    train = split_tasks(*load_mnist("train", a.data_dir), a.tasks)
    test = split_tasks(*load_mnist("test", a.data_dir), a.tasks)
    target = MLP([784, 100, 2 * a.tasks])  # a head of two outputs per task (CL1)
    cfg = ContinualConfig(iterations=a.steps, beta=0.01)
    g = torch.Generator().manual_seed(0)
    hnet = Hypernet(
        TaskConditioned(
            target,
            a.tasks,
            embedding_dim=32,
            hidden=(20, 20),
            chunk_size=8000,
            chunk_embedding_dim=32,
            generator=g,
        ),
        classes=2,
        cfg=cfg,
    )
    plain = FineTune(target.bind(generator=g), classes=2, cfg=cfg)
    for name, learner in (("hypernetwork", hnet), ("fine-tuning", plain)):
        res = fit_tasks(learner, train, test)
        print(f"{name}: accuracy of task j after task i")
        for i, row in enumerate(res.accuracy):
            print(f"  after task {i}: " + "  ".join(f"{v:.3f}" for v in row))
        print(
            f"  final mean {sum(res.final) / len(res.final):.4f}; task inferred (CL3) "
            f"{sum(res.final_inferred) / len(res.final_inferred):.4f}"
        )
        if name == "hypernetwork":
            final = sum(res.final) / len(res.final)
    print(f"example=continual_tasks metric=hnet_final_accuracy value={final:.4f}")


if __name__ == "__main__":
    main()
