"""Generative hypernetworks: noise to all weights of a network (Deutsch 2018, arXiv 1801.01952).

:mod:`~hyperlab.generative.model` (the generator G: z -> θ and the loss of Eq. 1-3),
:mod:`~hyperlab.generative.entropy` (Kozachenko–Leonenko, App. A.5),
:mod:`~hyperlab.generative.gauge` (gauge fixing, Sec. 3.2.2),
:mod:`~hyperlab.generative.analysis` (ensembles, diversity, FGSM, PCA, paths; Sec. 4.2).
"""

from hyperlab.generative.entropy import authors_entropy, kl_entropy, nn_distances
from hyperlab.generative.gauge import filter_mean_squares, gauge_fix, layers_of, random_symmetry
from hyperlab.generative.model import (
    PAPER_MNIST_GENERATOR_HIDDEN,
    GenerativeHyperNetwork,
    generative_loss,
)

__all__ = [
    "PAPER_MNIST_GENERATOR_HIDDEN",
    "GenerativeHyperNetwork",
    "authors_entropy",
    "filter_mean_squares",
    "gauge_fix",
    "generative_loss",
    "kl_entropy",
    "layers_of",
    "nn_distances",
    "random_symmetry",
]
