"""hyperlab: hypernetworks h(x, I) = g(x; f(I)) on PyTorch.

Primary networks are functional and batched ([`hyperlab.primary`][hyperlab.primary]); hypernetworks
and the
embedding baseline are built on them ([`hyperlab.hypernet`][hyperlab.hypernet]).
"""

from hyperlab.hypernet import (
    ChunkedHead,
    EmbeddingModel,
    FullHead,
    HyperModel,
    HyperNetwork,
    modularity_counts,
)
from hyperlab.modules import ModulePrimary
from hyperlab.primary import (
    MLP,
    BoundPrimary,
    ConvNet,
    ParamLayout,
    ParamSpec,
    Primary,
    count_parameters,
)

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "BoundPrimary",
    "ChunkedHead",
    "ConvNet",
    "EmbeddingModel",
    "FullHead",
    "HyperModel",
    "HyperNetwork",
    "ModulePrimary",
    "ParamLayout",
    "ParamSpec",
    "Primary",
    "count_parameters",
    "modularity_counts",
]
