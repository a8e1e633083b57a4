"""Training engine: the Lightning module, callbacks, checkpoint IO and the training entry point.

The names below are imported on first use, so that importing a module of this package that needs no Lightning
(:mod:`medseg.engine.outputs`, :mod:`medseg.engine.schedules`) does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy import lazy_exports

if TYPE_CHECKING:
    from medseg.checkpoints import CheckpointError, build_model, load_model_weights, read_checkpoint
    from medseg.engine.module import SegmentationTask, batch_dice
    from medseg.engine.trainer import TrainResult, create_run_dir, train

_EXPORTS = {
    "CheckpointError": "medseg.checkpoints",
    "load_model_weights": "medseg.checkpoints",
    "read_checkpoint": "medseg.checkpoints",
    "build_model": "medseg.checkpoints",
    "SegmentationTask": "medseg.engine.module",
    "batch_dice": "medseg.engine.module",
    "TrainResult": "medseg.engine.trainer",
    "create_run_dir": "medseg.engine.trainer",
    "train": "medseg.engine.trainer",
}

__all__ = [
    "CheckpointError",
    "SegmentationTask",
    "TrainResult",
    "batch_dice",
    "build_model",
    "create_run_dir",
    "load_model_weights",
    "read_checkpoint",
    "train",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
