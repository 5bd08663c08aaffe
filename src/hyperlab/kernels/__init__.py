"""Kernels of wide networks and hypernetworks (infinite-width paper).

- [`analytic`][hyperlab.kernels.analytic]: NNGP/NTK of (leaky-)ReLU MLPs and of hypernetworks
  (Thm 2 NNGP, Thm 3 hyperkernel), tiled float64.
- [`features`][hyperlab.kernels.features]: random Fourier features (Remarks 2-3).
- [`empirical`][hyperlab.kernels.empirical]: finite-width kernels via ``torch.func`` (Jacobian and
  NTK-vector products, the factorised hyperkernel of Eq. 12, Taylor terms of Eq. 5).
- [`regression`][hyperlab.kernels.regression]: kernel regression of Eq. 18 and the NNGP posterior,
  one front door ([`fit_kernel_regression`][hyperlab.kernels.regression.fit_kernel_regression]:
  dense
  Cholesky, matrix-free CG or 'auto').
- [`iterative`][hyperlab.kernels.iterative]: the matrix-free solver (PCG on kernel tiles computed on
  the fly; across processes under torchrun); [`tiles`][hyperlab.kernels.tiles]: the tiling.
"""

from hyperlab.kernels.analytic import ArcCosine, HyperKernel, MLPKernel, input_kernel
from hyperlab.kernels.empirical import (
    empirical_ntk,
    hyper_ntk,
    module_ntk,
    taylor_terms,
    trainable_params,
)
from hyperlab.kernels.features import FourierFeatures, rbf_kernel
from hyperlab.kernels.iterative import (
    CGOptions,
    NotConvergedError,
    cg_memory_bytes,
    check_cg_memory,
)
from hyperlab.kernels.regression import (
    KernelFit,
    NotPositiveDefiniteError,
    RegressionResult,
    fit_kernel_regression,
    kernel_regression,
)
from hyperlab.kernels.tiles import Tiles

__all__ = [
    "ArcCosine",
    "CGOptions",
    "cg_memory_bytes",
    "check_cg_memory",
    "KernelFit",
    "NotConvergedError",
    "Tiles",
    "FourierFeatures",
    "HyperKernel",
    "MLPKernel",
    "NotPositiveDefiniteError",
    "RegressionResult",
    "empirical_ntk",
    "fit_kernel_regression",
    "hyper_ntk",
    "input_kernel",
    "kernel_regression",
    "module_ntk",
    "rbf_kernel",
    "taylor_terms",
    "trainable_params",
]
