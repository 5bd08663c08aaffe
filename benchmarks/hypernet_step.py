"""One training step of the MNIST rotation hypernetwork, written every way a user would, in one run.

f: the flattened 784-pixel image -> 4 hidden layers of width 200 -> all weights of
g: 784 -> 50 -> 50 -> 12 (3 layers), batch 100, SGD, cross-entropy. Contenders, all with the
same f (its trunk and head are shared, so every path computes the same function):

1. hyperlab ``HyperModel``, first layer of g contracted against f's head (fused) and with the
   weights materialised (``fused=False``);
2. ``torch.func.vmap(functional_call)`` of an ``nn.Sequential`` g over per-sample weight dicts;
3. hand-written ``baddbmm`` on the split θ;
4. the fair variants of 2 and 3: the same ``vmap`` / ``baddbmm`` fed by per-tensor heads, as
   hyperlab's head is (θ never split from one big output);
5. a Python loop over the samples;
6. ``torch.compile(fullgraph=True)`` of the hyperlab model, fused and materialised;
7. hyperlab fused under bfloat16 autocast (float32 master weights), ``fit(precision="bf16")``'s
   step.

FLOPs per step are counted by ``FlopCounterMode`` (forward + backward); the machine's GEMM rate
is measured on a large square GEMM and on the step's own largest GEMMs (the head's forward and
weight gradient; ``FlopCounterMode`` counts matmuls exactly here, there are no grouped
convolutions in this model). Every contender runs at 1 and 2 threads (``--threads``), timed
with device synchronisation (``--device cuda`` works). The last line is
``speedup_vs_fastest_contender=<x> speedup_vs_vmap=<y> speedup_vs_loop=<z> gflops_fraction=<f>
speedup_bf16_vs_fp32=<b>`` at the most threads: the fastest float32 hyperlab path (compiled
included) against the fastest non-hyperlab contender (fair variants included), the fastest vmap
path and the loop; and hyperlab fused in bf16 against fused in float32, both inside
``keep_freed_memory()`` (each step's bf16 casts of the 7.8M-entry head block are fresh
tensors; without kept memory they page-fault, and that ratio is printed beside it).

``--sweep`` instead prints ms/step and working memory (peak RSS of a fresh subprocess minus its
memory before the first step) of hyperlab fused vs vmap as the batch grows (10, 100, 1,000) and
as g widens (50, 200, 800).

    .venv/bin/python benchmarks/hypernet_step.py             # contenders at 1 and 2 threads
    .venv/bin/python benchmarks/hypernet_step.py --sweep     # scaling table
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.utils.flop_counter import FlopCounterMode

from hyperlab import MLP, HyperModel
from hyperlab.runtime import cpu_model, keep_freed_memory, median_seconds, resolve_device

DEVICE = torch.device("cpu")
#: also timed inside keep_freed_memory() (as the generating experiments train), like for like
KEPT = ("hyperlab fused", "hyperlab fused, bf16 autocast")


def build(width: int = 50, device: str | torch.device = DEVICE) -> HyperModel:
    torch.manual_seed(0)
    return HyperModel(MLP([784, width, width, 12]), 784, [200, 200, 200, 200]).to(device)


def sequential_g(model: HyperModel) -> tuple[nn.Module, dict[str, str]]:
    """g as the nn.Module a user would write, and its parameter names -> hyperlab's."""
    sizes = model.g.sizes
    layers: list[nn.Module] = []
    names = {}
    for i in range(len(sizes) - 1):
        names[f"{2 * i}.weight"], names[f"{2 * i}.bias"] = f"fc{i}.weight", f"fc{i}.bias"
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).to("meta"), names  # functional_call supplies weights


def contenders(model: HyperModel) -> dict[str, tuple[Callable, list[nn.Parameter]]]:
    """name -> (forward(x, cond) giving logits (B, 12), the parameters it trains). The
    hyperlab paths use ``model``; the others use f as a user would write it: the same trunk
    and one ``nn.Linear`` head onto all N_g weights (a copy of hyperlab's), split per tensor."""
    g_mod, names = sequential_g(model)
    sizes, layout = model.g.sizes, model.g.layout
    head = nn.Linear(model.f.head.in_features, layout.numel).to(model.f.head.weights[0].device)
    with torch.no_grad():
        head.weight.copy_(model.f.head.weight)
        head.bias.copy_(model.f.head.bias)
    ours = list(model.parameters())
    theirs = [*model.f.trunk.parameters(), *head.parameters()]

    def user_theta(cond):
        return layout.unflatten(head(model.f.features(cond)))

    def hyperlab_fused(x, cond):
        model.fused = True
        return model(x, cond)

    def hyperlab_materialised(x, cond):
        model.fused = False
        return model(x, cond)

    def vmap_functional_call(x, cond, theta=None):
        theta = user_theta(cond) if theta is None else theta
        params = {k: theta[v] for k, v in names.items()}
        return vmap(lambda p, xi: functional_call(g_mod, p, (xi,)))(params, x)

    def hand_baddbmm(x, cond, theta=None):
        theta = user_theta(cond) if theta is None else theta
        h = x.unsqueeze(1)  # (B, 1, 784)
        for i in range(len(sizes) - 1):
            w, b = theta[f"fc{i}.weight"], theta[f"fc{i}.bias"]
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < len(sizes) - 2:
                h = torch.relu(h)
        return h.squeeze(1)

    def python_loop(x, cond):
        outs = []
        for i in range(x.shape[0]):  # the naive way: one weight set at a time
            theta = {k: v[0] for k, v in user_theta(cond[i : i + 1]).items()}
            outs.append(model.g(x[i : i + 1], theta))
        return torch.cat(outs)

    def hyperlab_bf16(x, cond):
        model.fused = True
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return model(x, cond).float()

    # the fair variants: θ from per-tensor heads (hyperlab's own head blocks), never split
    def vmap_per_tensor(x, cond):
        return vmap_functional_call(x, cond, model.weights(cond))

    def baddbmm_per_tensor(x, cond):
        return hand_baddbmm(x, cond, model.weights(cond))

    return {
        "hyperlab fused": (hyperlab_fused, ours),
        "hyperlab materialised": (hyperlab_materialised, ours),
        "vmap(functional_call)": (vmap_functional_call, theirs),
        "hand-written baddbmm": (hand_baddbmm, theirs),
        "vmap, per-tensor heads (fair)": (vmap_per_tensor, ours),
        "baddbmm, per-tensor heads (fair)": (baddbmm_per_tensor, ours),
        "python loop": (python_loop, theirs),
        "hyperlab fused, bf16 autocast": (hyperlab_bf16, ours),
    }


def compiled(model: HyperModel, fused: bool) -> Callable:
    model.fused = fused
    fn = torch.compile(model, fullgraph=True)

    def forward(x, cond):
        model.fused = fused
        return fn(x, cond)

    return forward


def make_step(forward: Callable, params: list, x, cond, y) -> Callable[[], float]:
    opt = torch.optim.SGD(params, lr=0.01)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(forward(x, cond), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def _plain_fp32_ours(name: str) -> bool:
    """A float32 hyperlab path under the allocator's defaults, as every contender runs."""
    return "hyperlab" in name and "bf16" not in name and "kept" not in name


def timeit(fn: Callable, repeats: int, warmup: int = 2) -> float:
    """Median seconds per call, synchronising the device around every timed call."""
    return median_seconds(fn, DEVICE, repeats=repeats, warmup=warmup)


def gemm_gflops(m: int, k: int, n: int, repeats: int) -> float:
    a, b = torch.randn(m, k, device=DEVICE), torch.randn(k, n, device=DEVICE)
    return 2 * m * k * n / timeit(lambda: a @ b, repeats) / 1e9


def count_flops(fn: Callable) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def data(batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 784, generator=gen)
    cond = torch.randn(batch, 784, generator=gen)
    y = torch.randint(0, 12, (batch,), generator=gen)
    return x.to(DEVICE), cond.to(DEVICE), y.to(DEVICE)


def contest(a: argparse.Namespace) -> None:
    x, cond, y = data(a.batch)
    model = build(device=DEVICE)
    n_g, n_head = model.g.layout.numel, 200
    n_f = sum(p.numel() for p in model.parameters())
    print(
        f"cpu: {cpu_model()}; device {DEVICE}; torch {torch.__version__}, batch {a.batch}, "
        f"N_f={n_f:,} N_g={n_g:,}",
        flush=True,
    )
    # every path computes the same logits from the same parameters
    ref = model(x, cond)
    paths = contenders(model)
    for name, (fwd, _) in paths.items():
        tol = {"rtol": 5e-2, "atol": 5e-2} if "bf16" in name else {"rtol": 1e-4, "atol": 1e-5}
        torch.testing.assert_close(fwd(x, cond), ref, msg=name, **tol)
    flops = {
        n: count_flops(make_step(f, ps, x, cond, y))
        for n, (f, ps) in paths.items()
        if n != "python loop" and "bf16" not in n
    }
    fused_flops = flops["hyperlab fused"]
    results: dict[int, dict[str, float]] = {}
    squares: dict[int, float] = {}
    for threads in a.threads:
        torch.set_num_threads(threads)
        if not a.no_compile:
            paths["compile(hyperlab fused)"] = (compiled(model, True), list(model.parameters()))
            paths["compile(hyperlab materialised)"] = (
                compiled(model, False),
                list(model.parameters()),
            )
        res = {}
        for name, (fwd, ps) in paths.items():
            step = make_step(fwd, ps, x, cond, y)
            loop = name == "python loop"
            res[name] = timeit(step, a.loop_repeats if loop else a.repeats, 1 if loop else 3)
        for name in KEPT:  # glibc keeping freed memory: bf16's casts reuse warm pages
            fwd, ps = paths[name]
            with keep_freed_memory():
                res[f"{name}, memory kept"] = timeit(make_step(fwd, ps, x, cond, y), a.repeats, 3)
        square = gemm_gflops(a.gemm_size, a.gemm_size, a.gemm_size, 5)
        head_fwd = gemm_gflops(a.batch, n_head, n_g, 10)
        head_wgrad = gemm_gflops(n_g, a.batch, n_head, 10)
        results[threads], squares[threads] = res, square
        best = min((t, n) for n, t in res.items() if _plain_fp32_ours(n))
        print(
            f"\n{threads} thread(s): GEMM GFLOP/s square {a.gemm_size}³ {square:.0f}, head "
            f"forward ({a.batch}x{n_head} @ {n_head}x{n_g}) {head_fwd:.0f}, head weight "
            f"gradient ({n_g}x{a.batch} @ {a.batch}x{n_head}) {head_wgrad:.0f}"
        )
        print(f"{'contender':44s} {'ms/step':>9s} {'GFLOP/s':>9s} {'÷ best hyperlab':>16s}")
        for name, t in res.items():
            print(f"{name:44s} {t * 1e3:9.2f} {fused_flops / t / 1e9:9.1f} {t / best[0]:16.2f}")
        print(
            f"step FLOPs: fused {fused_flops / 1e9:.2f} G (the useful work; GFLOP/s above and "
            f"fractions count these), materialised {flops['hyperlab materialised'] / 1e9:.2f} "
            f"G; best hyperlab ({best[1]}) at {fused_flops / best[0] / 1e9 / square:.0%} of "
            "the square-GEMM rate",
            flush=True,
        )
    top = max(results)
    res = results[top]
    best_t = min(t for n, t in res.items() if _plain_fp32_ours(n))
    rivals = {n: t for n, t in res.items() if "hyperlab" not in n and n != "python loop"}
    fastest = min(rivals, key=rivals.__getitem__)
    vmap_t = min(t for n, t in res.items() if "vmap" in n)
    bf16 = res["hyperlab fused, memory kept"] / res["hyperlab fused, bf16 autocast, memory kept"]
    bf16_plain = res["hyperlab fused"] / res["hyperlab fused, bf16 autocast"]
    print(f"fastest contender: {fastest}")
    print(
        f"speedup_vs_fastest_contender={rivals[fastest] / best_t:.2f} "
        f"speedup_vs_vmap={vmap_t / best_t:.2f} "
        f"speedup_vs_loop={res['python loop'] / best_t:.1f} "
        f"gflops_fraction={fused_flops / best_t / 1e9 / squares[top]:.2f} "
        f"speedup_bf16_vs_fp32={bf16:.2f} (both with memory kept; without: {bf16_plain:.2f})"
    )


def sweep_case(kind: str, batch: int, width: int, repeats: int) -> dict:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    x, cond, y = data(batch)
    model = build(width)
    fwd, ps = contenders(model)[kind]
    sec = timeit(make_step(fwd, ps, x, cond, y), repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": sec, "work_mb": peak - base}


def sweep(a: argparse.Namespace) -> None:
    print(f"torch {torch.__version__}, {a.threads[-1]} threads; ms/step (working memory MB)")
    print(
        f"{'case':24s} {'hyperlab fused':>22s} {'vmap(functional_call)':>24s} "
        f"{'vmap ÷ hyperlab':>16s}"
    )
    cases = [(b, 50) for b in (10, 100, 1000)] + [(100, w) for w in (200, 800)]
    for batch, width in cases:
        row = {}
        for kind in ("hyperlab fused", "vmap(functional_call)"):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                kind,
                str(batch),
                str(width),
                "--threads",
                str(a.threads[-1]),
                "--repeats",
                str(a.repeats),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        h, v = row["hyperlab fused"], row["vmap(functional_call)"]
        print(
            f"batch {batch:5d}, g width {width:4d} "
            f"{h['seconds'] * 1e3:12.2f} ({h['work_mb']:6.0f}) {v['seconds'] * 1e3:14.2f} "
            f"({v['work_mb']:6.0f}) {v['seconds'] / h['seconds']:16.2f}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--threads", type=lambda s: [int(t) for t in s.split(",")], default=[1, 2])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--loop-repeats", type=int, default=3)
    p.add_argument("--gemm-size", type=int, default=2048)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile contenders")
    p.add_argument("--sweep", action="store_true", help="scaling in batch and g width")
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    global DEVICE
    DEVICE = resolve_device(a.device)
    if a.child:
        torch.set_num_threads(a.threads[-1])
        kind, batch, width = a.child
        print(json.dumps(sweep_case(kind, int(batch), int(width), a.repeats)))
    elif a.sweep:
        sweep(a)
    else:
        contest(a)


if __name__ == "__main__":
    main()
