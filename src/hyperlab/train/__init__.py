"""The one training loop used by every hyperlab model and experiment:
[`fit`][hyperlab.train.loop.fit].

`.loop` (the loop, its phases and its documentation: randomness, host synchronisation,
distributed training), `.config` ([`TrainConfig`][hyperlab.train.config.TrainConfig],
[`History`][hyperlab.train.config.History], the errors),
`.state` (the training state and its checkpoints), `.seeds`
([`fit_seeds`][hyperlab.train.seeds.fit_seeds]: the
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
