"""A ResNet-18 with torchvision's module tree and names (written out here: torchvision's wheels
need the CUDA build of torch) as the primary: a chunked hypernetwork generates all of its
weights for each of 8 conditions (a learned embedding per condition), BatchNorm in train mode
normalising each condition's images with their own statistics. MNIST digits (padded to 32×32,
three channels: CIFAR-10 is not in the offline data), each condition with its own permutation
of the labels. Prints the parameter counts, ms/step and peak memory.

    python examples/resnet_per_sample.py            # the full ResNet-18 (11.2 M weights), 3 steps
    python examples/resnet_per_sample.py --tiny     # width 8, seconds
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from torch import nn

from hyperlab import HyperModel
from hyperlab.data import load_mnist, normalize
from hyperlab.modules import ModulePrimary


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """torchvision.models.resnet18's layers and names (``width`` 64: the real one)."""

    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._layer(width, 1)
        self.layer2 = self._layer(2 * width, 2)
        self.layer3 = self._layer(4 * width, 2)
        self.layer4 = self._layer(8 * width, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)

    def _layer(self, planes: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes:
            down = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        blocks = [BasicBlock(self.inplanes, planes, stride, down), BasicBlock(planes, planes)]
        self.inplanes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--conditions", type=int, default=8)
    ap.add_argument("--per-condition", type=int, default=16, help="images per condition")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    if args.tiny:
        args.steps, args.width, args.per_condition = 2, 8, 4
    torch.manual_seed(0)
    images, labels = load_mnist("train", args.data_dir)
    images, labels = images[:5000], labels[:5000]
    images = nn.functional.pad(normalize(images), (2, 2, 2, 2)).unsqueeze(1).expand(-1, 3, -1, -1)
    c, n = args.conditions, args.per_condition
    perms = torch.stack([torch.randperm(10) for _ in range(c)])  # each condition's labels
    g = ModulePrimary(ResNet18(10, args.width), (3, 32, 32))  # BatchNorm statistics: shared
    model = HyperModel(g, 16, [64], head="chunked")  # the chunked head's defaults
    emb = nn.Parameter(torch.randn(c, 16))
    opt = torch.optim.Adam([emb, *model.parameters()], lr=1e-3)
    model.train()
    times = []
    for _ in range(args.steps):
        idx = torch.randint(0, len(labels), (c, n))
        x = images[idx.reshape(-1)].reshape(c, n, 3, 32, 32)
        y = perms.gather(1, labels[idx])
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model(x, emb)  # (c, n, 10): every condition's network on its images
        loss = nn.functional.cross_entropy(logits.reshape(-1, 10), y.reshape(-1))
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    f_params = sum(p.numel() for p in model.f.parameters())
    print(
        f"ResNet-18 (width {args.width}): {g.layout.numel:,} generated weights per condition, "
        f"{c} conditions x {n} images; hypernetwork {f_params:,} parameters (chunked head)"
    )
    print(
        f"{1000 * min(times):.0f} ms/step (best of {args.steps}); "
        f"loss {float(loss.detach()):.3f}; "
        f"peak memory {peak_gb:.2f} GB (max RSS)"
    )
    print(f"example=resnet_per_sample metric=peak_memory_gb value={peak_gb:.3f}")


if __name__ == "__main__":
    main()
