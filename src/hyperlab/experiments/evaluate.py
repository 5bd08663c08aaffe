"""One batched evaluation loop for every experiment: run a model over a split in chunks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["evaluate_batches"]


@torch.no_grad()
def evaluate_batches(
    model: nn.Module | Callable[..., Tensor],
    split: Mapping[str, Tensor],
    totals: Callable[[Tensor, Mapping[str, Tensor]], Mapping[str, float | Tensor]],
    *,
    device: torch.device | str,
    batch: int = 1000,
    inputs: Sequence[str] = ("x", "cond"),
) -> dict[str, float]:
    """Sum ``totals(model(*inputs), chunk)`` over ``split`` in chunks of ``batch`` samples.

    An ``nn.Module`` runs in eval mode (its mode is restored). ``totals`` returns per-chunk
    sums, such as squared errors or wrong predictions; the caller divides by the counts it needs.
    """
    module = model if isinstance(model, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    n = next(iter(split.values())).shape[0]
    out: dict[str, float] = {}
    try:
        for i in range(0, n, batch):
            chunk = {k: v[i : i + batch].to(device) for k, v in split.items()}
            pred = model(*(chunk[k] for k in inputs))
            for key, value in totals(pred, chunk).items():
                out[key] = out.get(key, 0.0) + float(value)
    finally:
        if module is not None:
            module.train(was_training)
    return out
