"""The one training loop used by every hyperlab model and experiment: :func:`fit`.

:mod:`.loop` (the loop, its phases and its documentation: randomness, host synchronisation,
distributed training), :mod:`.config` (:class:`TrainConfig`, :class:`History`, the errors),
:mod:`.state` (the training state and its checkpoints), :mod:`.seeds` (:func:`fit_seeds`: the
seeds of one architecture trained side by side as one batched model).
"""

from hyperlab.train.config import (
    PRECISIONS,
    CheckpointMismatchError,
    History,
    TrainConfig,
    TrainingDiverged,
    autocast,
)
from hyperlab.train.loop import fit
from hyperlab.train.seeds import fit_seeds
from hyperlab.train.state import CHECKPOINT_NAME, TrainState

__all__ = [
    "CHECKPOINT_NAME",
    "PRECISIONS",
    "CheckpointMismatchError",
    "History",
    "TrainConfig",
    "TrainState",
    "TrainingDiverged",
    "autocast",
    "fit",
    "fit_seeds",
]
