"""Dataset readers (MNIST, Fashion-MNIST, CIFAR-10) and task builders for the papers' experiments.

Data is looked up under ``data_dir``, else ``$HYPERLAB_DATA``, else the user cache dir; see
[`hyperlab.data.datasets`][hyperlab.data.datasets] (its checksum registry, downloads and
verification live there).
Task builders ([`hyperlab.data.tasks`][hyperlab.data.tasks]) return batched dicts ``{"x", "cond",
"y"}``.
"""

from .datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATA_ENV_VAR,
    MNIST_MEAN,
    MNIST_STD,
    DataCorruptError,
    DataNotFoundError,
    fetch_dataset,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
    normalize,
    resolve_data_dir,
)
from .tasks import (
    colorization_batch,
    make_synthetic_target,
    rotation_batch,
    rotation_pair_batch,
    synthetic_task,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATA_ENV_VAR",
    "MNIST_MEAN",
    "MNIST_STD",
    "DataCorruptError",
    "DataNotFoundError",
    "colorization_batch",
    "fetch_dataset",
    "load_cifar10",
    "load_fashion_mnist",
    "load_mnist",
    "make_synthetic_target",
    "normalize",
    "resolve_data_dir",
    "rotation_batch",
    "rotation_pair_batch",
    "synthetic_task",
]
