"""Generative hypernetworks: noise to all weights of a network (Deutsch 2018, arXiv 1801.01952).

[`model`][hyperlab.generative.model] (the generator G: z -> θ, Sec. 3.3, and the loss of Eq. 1-3),
[`entropy`][hyperlab.generative.entropy] (Kozachenko–Leonenko, App. A.5),
[`gauge`][hyperlab.generative.gauge] (gauge fixing, Sec. 3.2.2),
[`analysis`][hyperlab.generative.analysis] (ensembles, diversity, FGSM, PCA, paths; Sec. 4.2),
[`mnf`][hyperlab.generative.mnf] (the MNF baseline, Louizos & Welling 2017).
"""

from hyperlab.generative.analysis import (
    accuracies,
    disagreement_rate,
    ensemble_accuracies,
    fgsm_attack,
    filter_diversity,
    interpolation_paths,
    majority_vote,
    pairwise_distances,
    pca,
    predict_logits,
    wrong_prediction_iou,
)
from hyperlab.generative.entropy import authors_entropy, kl_entropy, nn_distances
from hyperlab.generative.gauge import filter_mean_squares, gauge_fix, layers_of, random_symmetry
from hyperlab.generative.mnf import MNFNetwork
from hyperlab.generative.model import (
    PAPER_MNIST_GENERATOR_HIDDEN,
    GenerativeHyperNetwork,
    generative_loss,
    recalibrate_batch_norm,
)

__all__ = [
    "PAPER_MNIST_GENERATOR_HIDDEN",
    "GenerativeHyperNetwork",
    "MNFNetwork",
    "accuracies",
    "authors_entropy",
    "disagreement_rate",
    "wrong_prediction_iou",
    "ensemble_accuracies",
    "fgsm_attack",
    "filter_diversity",
    "filter_mean_squares",
    "gauge_fix",
    "generative_loss",
    "interpolation_paths",
    "kl_entropy",
    "layers_of",
    "majority_vote",
    "nn_distances",
    "pairwise_distances",
    "pca",
    "predict_logits",
    "random_symmetry",
    "recalibrate_batch_norm",
]
