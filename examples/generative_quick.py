"""The generative hypernetwork (Deutsch 2018): noise z -> every weight of a small MNIST
convnet, trained for accuracy and diversity (λ · CE − entropy of the gauge-fixed weights);
then many networks drawn at once, each evaluated, and their majority vote.

    python examples/generative_quick.py            # 400 steps
    python examples/generative_quick.py --tiny     # seconds
"""

from __future__ import annotations

import argparse

import torch

from hyperlab import ConvNet
from hyperlab.data import load_mnist, normalize
from hyperlab.generative.model import GenerativeHyperNetwork, generative_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    if a.tiny:
        a.steps = 15
    images, labels = load_mnist("train", a.data_dir)
    test_x, test_y = load_mnist("test", a.data_dir)
    x = normalize(images).unsqueeze(1)
    xt, yt = normalize(test_x[:1000]).unsqueeze(1), test_y[:1000]
    target = ConvNet()  # the paper's 20,018-weight MNIST target (App. A.6)
    model = GenerativeHyperNetwork(target, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    b, n = 16, 16  # 16 networks a step, each on its own 16 images
    for _ in range(a.steps):
        idx = torch.randint(0, len(labels), (b, n), generator=g)
        loss, parts = generative_loss(model, x[idx], labels[idx], lam=1e3)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        theta = model(model.sample_noise(50))  # 50 networks in one call
        logits = target(xt.expand(50, *xt.shape), theta)  # (50, 1000, 10)
        acc = (logits.argmax(-1) == yt).float().mean(1)
        vote = logits.argmax(-1).mode(0).values
    print(f"{target.layout.numel:,} generated weights per network; {a.steps} steps")
    print(
        f"50 sampled networks: accuracy {float(acc.mean()):.4f} ± {float(acc.std()):.4f} "
        f"(min {float(acc.min()):.4f}); majority vote {float((vote == yt).float().mean()):.4f}"
    )
    print(f"example=generative_quick metric=mean_accuracy value={float(acc.mean()):.4f}")


if __name__ == "__main__":
    main()
