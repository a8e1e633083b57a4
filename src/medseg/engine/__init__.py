"""Training engine: the Lightning module, callbacks, checkpoint IO and the training entry point."""

from medseg.engine.checkpoint import CheckpointError, load_model_weights, read_checkpoint
from medseg.engine.module import SegmentationTask, batch_dice, build_model
from medseg.engine.trainer import TrainResult, create_run_dir, train

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
