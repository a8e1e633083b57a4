"""ReSeg-UNet stage 1 as a training task: ``train.task: reconstruction``.

The network is fed the ground-truth label map, encoded by :func:`~medseg.objectives.reconstruction.encode_label_map`,
and learns to reproduce the image (or the one-hot mask) with the loss of
:class:`~medseg.objectives.reconstruction.ReconstructionTerm` (docs/methods/reseg_unet.md#stage-1). Its last
checkpoint is the frozen teacher of the ReSeg alignment term (:mod:`medseg.objectives.reseg`) in a later stage
(``teacher_from``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, get_args

import torch

from medseg.config import ConfigError
from medseg.objectives import Objective
from medseg.objectives.reconstruction import ReconTarget, encode_label_map, reconstruction_objective
from medseg.tasks.base import TrainingTask, register_task

if TYPE_CHECKING:
    from medseg.config import ExperimentConfig

__all__ = ["ReconstructionTask"]


@register_task
class ReconstructionTask(TrainingTask):
    """The stage-1 task: label map in, image (or mask) out.

    The run trains with the reconstruction loss only (logged as ``train/recon``), gets the geometric augmentations
    only (its image is a regression target, not the model's input), validates with ``val/loss`` alone, keeps the
    lowest one as ``best.ckpt`` and is not evaluated.

    Args:
        config: the experiment; ``loss.terms`` must be empty (its ``loss`` settings are not used).
        target: what the network regresses (``train.task_params.target``): ``image`` (the official code) or
            ``mask`` (the one-hot mask).

    Raises:
        ConfigError: ``loss.terms`` is not empty, or an unknown ``target``.
    """

    name = "reconstruction"
    monitor = "val/loss"
    mode = "min"
    evaluates = False
    intensity_augment = False
    makes_teacher = True
    checkpoint_rule = "best: lowest validation reconstruction loss (val/loss); last: final epoch (the ReSeg teacher)"

    def __init__(self, config: ExperimentConfig, target: ReconTarget = "image") -> None:
        super().__init__(config)
        if target not in get_args(ReconTarget):
            raise ConfigError(f"train.task_params.target: must be image or mask, got {target!r}")
        if config.loss.terms:
            raise ConfigError(
                "train.task=reconstruction trains with the reconstruction loss only; loss.terms must be empty"
            )
        self.target: ReconTarget = target

    def model_input(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The batch's label maps, encoded as the official stage-1 input.

        Args:
            batch: the batch (``image``, ``mask``).

        Returns:
            ``(B, in_channels, H, W)`` float input.
        """
        return encode_label_map(batch["mask"], self.config.data.in_channels)

    def objective(self) -> Objective:
        """The reconstruction objective towards ``target`` (one term, ``recon``).

        Returns:
            The objective.
        """
        return reconstruction_objective(self.config, self.target)
