"""Run by test_iterative under torchrun (2 processes): the CG solve of the single-process
test, rank 0 saves α and predictions to argv[1]."""

import sys

import torch
import torch.distributed as dist

from hyperlab.kernels import HyperKernel

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from test_iterative import fit_cg, table1_like  # noqa: E402

dist.init_process_group("gloo")
x, z, y = table1_like(24, 6)
hk = HyperKernel(6, 2, 3, 3, z_kernel="rbf", lengthscale=2**0.5)
fit = fit_cg(hk, (x, z), y, get=("nngp", "ntk"), tol=1e-10, rank=30,
                               block_size=16)  # fmt: skip
pred = fit.predict((x[:40], z[:40]))
if dist.get_rank() == 0:
    torch.save({"world": dist.get_world_size(), "iterations": fit.iterations,
                "alpha": fit.alpha, "pred": pred}, sys.argv[1])  # fmt: skip
dist.barrier()  # neither rank tears gloo down while the other still works
dist.destroy_process_group()
