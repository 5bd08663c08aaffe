"""One training step of the generating-networks paper at its batch, in one run: the plain
grouped-conv target forward against hyperlab's (on CPU each network's conv blocks as ordinary
channels-last convolutions, one network after another, also timed with one grouped conv per
block as on a GPU; max-pool before the activation; nearest neighbours of the entropy found
without autograd), in float32, then as the
experiments run it (glibc keeping freed memory: `hyperlab.runtime.keep_freed_memory`), and
with the target networks under bfloat16 autocast (``target_dtype``; fast on CPUs with AMX or
AVX-512 BF16), at 1 and 2 threads.

The step: G maps 32 noise vectors to 32 full sets of the 20,018-weight MNIST conv target
(App. A.6), each set classifies its own 32 images, loss λ·CE − entropy (Eq. 1-3, λ = 1e3),
Adam 3e-4. "plain, memory kept" shows how much of the gain is the allocator's alone. The
float32 paths run the same model from the same state and must give the same
loss (checked here; gradients are checked in tests/test_primary.py); the bfloat16 line prints
how far its loss moved; a line per thread count times the entropy's nearest-neighbour search
(hyperlab's, ``pdist``, against ``cdist``). Ends with the headline like for like,
``speedup_vs_grouped_conv_like_for_like=<x>`` (float32, both with freed memory kept, as the
experiments run), then ``speedup_vs_grouped_conv=<y>`` (hyperlab with memory kept against the
plain path without it: the allocator's gain counted as ours; printed for comparison with
earlier records) and ``speedup_bf16_vs_grouped_conv_like_for_like=<z>``, at the most threads.

    .venv/bin/python benchmarks/generative_step.py
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import statistics
import time

import torch

from hyperlab import ConvNet
from hyperlab.generative import GenerativeHyperNetwork, generative_loss
from hyperlab.generative.entropy import _distance_matrix
from hyperlab.runtime import keep_freed_memory


def make(path: str) -> tuple[GenerativeHyperNetwork, torch.optim.Optimizer]:
    """``path``: "plain" (the NCHW grouped conv -> activation -> pool forward), "grouped"
    (hyperlab's forward with one grouped conv per block, as on a GPU) or "hyperlab"."""
    g = ConvNet()
    if path != "hyperlab":
        kw = {"reference": True} if path == "plain" else {"per_set": False}
        g._forward_batched = functools.partial(ConvNet._forward_batched, g, **kw)
    model = GenerativeHyperNetwork(g, 300, generator=torch.Generator().manual_seed(0))
    return model, torch.optim.Adam(model.parameters(), lr=3e-4)


def neighbour_search(model: GenerativeHyperNetwork, z: torch.Tensor, repeats: int = 20) -> str:
    """The entropy's nearest-neighbour search on the step's generated weights (L1, without
    autograd): hyperlab's (``pdist``, each pair once) against the full ``cdist``."""
    with torch.no_grad():
        flat = model.primary.layout.flatten(model(z))
    p = 1.0
    contenders = {
        "cdist": lambda: torch.cdist(flat, flat, p=p, compute_mode="donot_use_mm_for_euclid_dist"),
        "hyperlab (pdist)": lambda: _distance_matrix(flat, p),
    }
    ms = {}
    for name, fn in contenders.items():
        fn()
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        ms[name] = statistics.median(runs) * 1e3
    torch.testing.assert_close(contenders["hyperlab (pdist)"](), contenders["cdist"](),
                               rtol=1e-4, atol=0.0)  # fmt: skip
    return (f"nearest neighbours ({tuple(flat.shape)}, L1): cdist {ms['cdist']:.2f} ms, "
            f"hyperlab (pdist) {ms['hyperlab (pdist)']:.2f} ms, "
            f"x{ms['cdist'] / ms['hyperlab (pdist)']:.1f}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--noise", type=int, default=32, help="networks per step")
    p.add_argument("--images", type=int, default=32, help="images per network")
    p.add_argument("--threads", type=lambda s: [int(t) for t in s.split(",")], default=[1, 2])
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(a.noise, a.images, 1, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (a.noise, a.images), generator=gen)
    z = torch.rand(a.noise, 300, generator=gen) * 2 - 1
    print(f"torch {torch.__version__}; {a.noise} noise samples x {a.images} images per step")
    fair = unfair = fair_bf = float("nan")
    for threads in a.threads:
        torch.set_num_threads(threads)
        times, losses = {}, {}
        base, _ = make("hyperlab")
        contenders = (  # name, forward path, target dtype, keep freed memory
            ("plain", "plain", None, False), ("plain, memory kept", "plain", None, True),
            ("hyperlab", "hyperlab", None, False),
            ("hyperlab, memory kept", "hyperlab", None, True),
            ("hyperlab grouped, memory kept", "grouped", None, True),
            ("bf16, memory kept", "hyperlab", torch.bfloat16, True),
        )  # fmt: skip
        for name, path, dtype, keep in contenders:
            model, opt = make(path)
            model.load_state_dict(copy.deepcopy(base.state_dict()))

            def step(model=model, opt=opt, dtype=dtype) -> float:
                opt.zero_grad(set_to_none=True)
                loss, _ = generative_loss(model, images, labels, lam=1e3, z=z, target_dtype=dtype)
                loss.backward()
                return float(loss.detach())

            with keep_freed_memory() if keep else contextlib.nullcontext():
                losses[name] = step()  # the same state: the same loss
                opt.step()
                runs = []
                for _ in range(a.repeats):
                    t0 = time.perf_counter()
                    step()
                    opt.step()
                    runs.append(time.perf_counter() - t0)
            times[name] = statistics.median(runs)
        ref = times["plain"]
        line = f"{threads} thread(s): plain grouped conv {ref * 1e3:7.1f} ms/step"
        for name, *_ in contenders[1:]:
            rel = abs(losses[name] - losses["plain"]) / abs(losses["plain"])
            line += (f"; {name} {times[name] * 1e3:7.1f} ms, x{ref / times[name]:.2f} "
                     f"(loss moved {rel:.1e})")  # fmt: skip
        print(line, flush=True)
        print(neighbour_search(base, z), flush=True)
        kept = times["plain, memory kept"]
        fair = kept / times["hyperlab, memory kept"]
        unfair = ref / times["hyperlab, memory kept"]
        fair_bf = kept / times["bf16, memory kept"]
    print(
        f"speedup_vs_grouped_conv_like_for_like={fair:.2f} "
        f"speedup_vs_grouped_conv={unfair:.2f} (not like for like: plain without kept memory) "
        f"speedup_bf16_vs_grouped_conv_like_for_like={fair_bf:.2f}"
    )


if __name__ == "__main__":
    main()
