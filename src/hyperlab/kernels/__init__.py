"""Kernels of wide networks and hypernetworks (infinite-width paper).

- :mod:`~hyperlab.kernels.analytic`: NNGP/NTK of (leaky-)ReLU MLPs and of hypernetworks
  (Thm 2 NNGP, Thm 3 hyperkernel), tiled float64.
- :mod:`~hyperlab.kernels.features`: random Fourier features (Remarks 2-3).
- :mod:`~hyperlab.kernels.empirical`: finite-width kernels via ``torch.func`` (Jacobian and
  NTK-vector products, the factorised hyperkernel of Eq. 12, Taylor terms of Eq. 5).
- :mod:`~hyperlab.kernels.regression`: kernel regression of Eq. 18 and the NNGP posterior.
- :mod:`~hyperlab.kernels.iterative`: the same regression for large N, matrix-free (PCG on
  kernel tiles computed on the fly; across processes under torchrun).
"""

from hyperlab.kernels.analytic import ArcCosine, HyperKernel, MLPKernel, Tiles, input_kernel
from hyperlab.kernels.empirical import (
    empirical_ntk,
    hyper_ntk,
    module_ntk,
    taylor_terms,
    trainable_params,
)
from hyperlab.kernels.features import FourierFeatures, rbf_kernel
from hyperlab.kernels.iterative import CGFit, NotConvergedError, fit_kernel_regression_cg
from hyperlab.kernels.regression import (
    KernelRegressionFit,
    NotPositiveDefiniteError,
    RegressionResult,
    fit_kernel_regression,
    kernel_predict,
    kernel_regression,
)

__all__ = [
    "ArcCosine",
    "CGFit",
    "NotConvergedError",
    "Tiles",
    "fit_kernel_regression_cg",
    "FourierFeatures",
    "HyperKernel",
    "KernelRegressionFit",
    "MLPKernel",
    "NotPositiveDefiniteError",
    "RegressionResult",
    "empirical_ntk",
    "fit_kernel_regression",
    "hyper_ntk",
    "input_kernel",
    "kernel_predict",
    "kernel_regression",
    "module_ntk",
    "rbf_kernel",
    "taylor_terms",
    "trainable_params",
]
