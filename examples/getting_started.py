"""Getting started: a hypernetwork on an MLP and on your own nn.Module, trained with fit,
checkpointed, interrupted and resumed (the resumed run ends where an uninterrupted one does).

The task: rotated MNIST digits, f reads the image and generates the weights of g, which
classifies the rotation (12 classes of 30 degrees), as in the modularity paper's Fig. 3.

    python examples/getting_started.py            # 3 epochs on 10,000 images
    python examples/getting_started.py --tiny     # seconds
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch import nn

from hyperlab import MLP, HyperModel
from hyperlab.data import load_mnist, rotation_batch
from hyperlab.modules import ModulePrimary
from hyperlab.train import TrainConfig, fit


def loss(model: nn.Module, batch: dict) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch["x"], batch["cond"]), batch["y"])


def accuracy(model: nn.Module, data: dict) -> float:
    with torch.no_grad():
        return float((model(data["x"], data["cond"]).argmax(-1) == data["y"]).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    if a.tiny:
        a.n, a.epochs = 512, 2
    images, _ = load_mnist("train", a.data_dir)
    g = torch.Generator().manual_seed(0)
    data = rotation_batch(images[: a.n], generator=g)  # {"x", "cond", "y"}: x = cond = image
    test = rotation_batch(load_mnist("test", a.data_dir)[0][:1000], generator=g)
    print({k: tuple(v.shape) for k, v in data.items()})

    # 1. g an MLP: 784 -> 10 -> 12, every weight generated per image by f (two layers of 100)
    torch.manual_seed(0)
    model = HyperModel(MLP([784, 10, 12]), cond_features=784, hidden=[100, 100])
    cfg = TrainConfig(epochs=a.epochs, batch_size=64, lr=0.01, momentum=0.9, progress=False)
    hist = fit(model, loss, data, cfg)
    print(
        "MLP primary: train loss per epoch",
        [round(v, 3) for v in hist.series("train_loss")],
        f"test accuracy {accuracy(model, test):.3f}",
    )

    # 2. g your own nn.Module: the same with a small convnet, names as named_parameters()
    net = nn.Sequential(
        nn.Conv2d(1, 4, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 12)
    )
    torch.manual_seed(0)
    conv_model = HyperModel(ModulePrimary(net, in_shape=(1, 28, 28)), 784, [100])
    conv_data = {**data, "x": data["x"].view(-1, 1, 28, 28)}
    fit(conv_model, loss, conv_data, cfg)
    conv_test = {**test, "x": test["x"].view(-1, 1, 28, 28)}
    print(f"own nn.Module primary: test accuracy {accuracy(conv_model, conv_test):.3f}")

    # 3. checkpoints: stop after one epoch, resume; the same end as an uninterrupted run
    with tempfile.TemporaryDirectory() as ckpt:
        torch.manual_seed(0)
        m1 = HyperModel(MLP([784, 10, 12]), 784, [100, 100])
        fit(m1, loss, data, cfg, checkpoint_dir=ckpt, stop_after_epochs=1)  # "killed" here
        torch.manual_seed(1)  # a different init: the checkpoint decides, not the seed
        m2 = HyperModel(MLP([784, 10, 12]), 784, [100, 100])
        resumed = fit(m2, loss, data, cfg, checkpoint_dir=ckpt)  # continues from epoch 2
    same = all(torch.equal(p, q) for p, q in zip(m2.parameters(), model.parameters(), strict=True))
    print(
        f"resumed run: {len(resumed)} epochs, parameters identical to the uninterrupted run: {same}"
    )
    print(f"example=getting_started metric=resumed_identical value={int(same)}")


if __name__ == "__main__":
    main()
