"""One regularised training step of a task-conditioned hypernetwork with T earlier tasks:
hyperlab's batched output regulariser (``hyperlab.continual``: every earlier task in one call of
f_h) against hypnettorch 0.0.4's ``calc_fix_target_reg`` (one call of f_h per earlier task),
both with the look-ahead, at T = 5, 10, 50.

The set-up is the released SplitMNIST one (von Oswald et al. 2020; chrhenning/hypercl
mnist/train_args_default.py): target MLP 784-400-400-10, task embeddings of 96, chunk embeddings
of 96, a 10-10 ReLU chunk generator, chunks of 42,000, β = 0.01, Adam 1e-3 for Θ_h and for the
task embedding, batch 128. hypnettorch's step is the released code's (task loss backward,
``calc_delta_theta``, regulariser backward, both optimizers step); hyperlab's is
:meth:`hyperlab.continual.Hypernet.step`. hyperlab's hypernetwork is given hypnettorch's exact
weights, so the two regularisers are checked equal (relative 1e-6) before timing.

Same threads (``--threads``, default 1), float32, the default allocator; the median of
``--repeat`` timed steps after ``--warmup`` steps (CPU: no synchronisation needed; on CUDA the
timer synchronises). hypnettorch is an optional peer: ``pip install hypnettorch==0.0.4``
(``pip install -e .[peers]``); without it the script says so and exits 0. The last line is
``speedup_vs_hypnettorch=<x>`` at T = 50.

    .venv/bin/python benchmarks/continual_regularizer.py
"""

from __future__ import annotations

import argparse
import importlib.util

import torch
import torch.nn.functional as F

from hyperlab.continual import ContinualConfig, Hypernet, TaskConditioned, output_regularizer
from hyperlab.primary import MLP
from hyperlab.runtime import cpu_model, median_seconds, num_threads, resolve_device

SIZES = [784, 400, 400, 10]
EMB, CHUNK_EMB, HIDDEN, CHUNK = 96, 96, (10, 10), 42_000
BETA, LR, BATCH = 0.01, 1e-3, 128


def _hypnettorch(n_tasks: int, dev: torch.device):
    from hypnettorch.hnets import ChunkedHMLP
    from hypnettorch.mnets import MLP as HMLP_MLP

    mnet = HMLP_MLP(n_in=SIZES[0], n_out=SIZES[-1], hidden_layers=SIZES[1:-1], no_weights=True,
                    verbose=False).to(dev)  # fmt: skip
    hnet = ChunkedHMLP(mnet.param_shapes, CHUNK, chunk_emb_size=CHUNK_EMB, cond_in_size=EMB,
                       layers=HIDDEN, num_cond_embs=n_tasks, verbose=False).to(dev)  # fmt: skip
    return mnet, hnet


def _copy_into(model: TaskConditioned, hnet) -> None:
    """hyperlab's chunked head gets hypnettorch's weights (its first layer acts on
    [chunk embedding; task embedding])."""
    w0, b0, w1, b1, w2, b2, chunks = hnet.unconditional_params
    head = model.hnet.head
    with torch.no_grad():
        head.chunk_embeddings.copy_(chunks)
        head.w_chunk.copy_(w0[:, :CHUNK_EMB])
        head.w_features.copy_(w0[:, CHUNK_EMB:])
        head.b_hidden.copy_(b0)
        head.w_more[0].copy_(w1)
        head.b_more[0].copy_(b1)
        head.w_out.copy_(w2)
        head.b_out.copy_(b2)
        for e, c in zip(model.embeddings, hnet.conditional_params, strict=True):
            e.copy_(c)


def _median_ms(step, dev: torch.device, warmup: int, repeat: int) -> float:
    return 1000 * median_seconds(step, dev, repeats=repeat, warmup=warmup)


def compare(t: int, dev: torch.device, warmup: int, repeat: int) -> tuple[float, float]:
    """ms per step (hyperlab, hypnettorch) with t earlier tasks (the current task is t)."""
    from hypnettorch.utils import hnet_regularizer as hreg
    from hypnettorch.utils import optim_step as opstep

    torch.manual_seed(0)
    mnet, hnet = _hypnettorch(t + 1, dev)
    target = MLP(SIZES, "relu")
    model = TaskConditioned(target, t + 1, embedding_dim=EMB, hidden=HIDDEN, chunk_size=CHUNK,
                            chunk_embedding_dim=CHUNK_EMB).to(dev)  # fmt: skip
    _copy_into(model, hnet)
    g = torch.Generator().manual_seed(1)
    batch = {"x": torch.rand(BATCH, SIZES[0], generator=g).to(dev),
             "y": torch.randint(0, SIZES[-1], (BATCH,), generator=g).to(dev)}  # fmt: skip

    # hypnettorch, as the released code trains a task
    targets = hreg.get_current_targets(t, hnet)
    opt = torch.optim.Adam(hnet.unconditional_params, lr=LR)
    opt_emb = torch.optim.Adam([hnet.conditional_params[t]], lr=LR)

    def peer_step() -> None:
        opt.zero_grad()
        opt_emb.zero_grad()
        weights = hnet.forward(cond_id=t)
        loss = F.cross_entropy(mnet.forward(batch["x"], weights=weights), batch["y"])
        loss.backward()
        dtheta = opstep.calc_delta_theta(opt, False, lr=LR, detach_dt=True)
        reg = BETA * hreg.calc_fix_target_reg(hnet, t, targets=targets, dTheta=dtheta)
        reg.backward()
        opt.step()
        opt_emb.step()

    learner = Hypernet(model, SIZES[-1], ContinualConfig(beta=BETA, lr=LR, embedding_lr=LR,
                                                         heads="single"))  # fmt: skip
    learner.start_task(t, batch)
    # the same regulariser on the same weights (no look-ahead: the optimizers have no state)
    assert learner.targets is not None
    ours = float(output_regularizer(model, learner.targets, range(t)).detach())
    peer = float(hreg.calc_fix_target_reg(hnet, t, targets=targets).detach())
    assert peer > 0 or ours == 0
    if abs(ours - peer) > 1e-6 * max(abs(peer), 1e-12):
        raise AssertionError(f"T={t}: regulariser {ours!r} (hyperlab) vs {peer!r} (hypnettorch)")
    # perturb both the same way so the regulariser is away from zero while timing
    with torch.no_grad():
        for p in [*hnet.unconditional_params, *model.hnet.parameters()]:
            p.mul_(1.01)
    ms_ours = _median_ms(lambda: learner.step(t, batch), dev, warmup, repeat)
    ms_peer = _median_ms(peer_step, dev, warmup, repeat)
    return ms_ours, ms_peer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[5, 10, 50])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    if importlib.util.find_spec("hypnettorch") is None:
        print("hypnettorch is not installed (pip install hypnettorch==0.0.4): nothing to compare")
        return
    dev = resolve_device(args.device)
    print(f"cpu: {cpu_model()}; device {dev}; torch "
          f"{torch.__version__}; threads {args.threads}; float32")  # fmt: skip
    print(f"set-up: target {SIZES}, chunks of {CHUNK:,}, generator {HIDDEN}, batch {BATCH}")
    ratio = float("nan")
    with num_threads(args.threads if dev.type == "cpu" else None):
        for t in args.tasks:
            ours, peer = compare(t, dev, args.warmup, args.repeat)
            ratio = peer / ours
            print(
                f"T={t:3d} earlier tasks: hyperlab {ours:8.1f} ms/step  hypnettorch "
                f"{peer:8.1f} ms/step  ratio {ratio:.2f}x  (regulariser equal to 1e-6)"
            )
    print(f"speedup_vs_hypnettorch={ratio:.2f}")


if __name__ == "__main__":
    main()
