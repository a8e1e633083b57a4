"""ReSeg-UNet stage 1: the same network trained to map the ground-truth label map to the image.

ReSeg-UNet (MICCAI 2025; code: Li-gzhu/ReSeg-UNet, ``UNet.zip`` -> ``train_unet_re.py``) first trains a
"reconstruction" network of the segmentation architecture whose **input is the ground-truth label map** (integer
class ids cast to float and repeated to the image channels, no normalisation, no one-hot) and whose **target is the
image**. The loss is ``0.6 · MSE + 0.4 · L1`` between the ``C``-channel output and the one-channel image, which the
official code computes by broadcasting: every output channel regresses the image (docs/methods/reseg_unet.md#stage-1).
medseg feeds grey images repeated to ``in_channels``; when the image has several channels and their count differs from
the output's, the target is their mean (for a repeated grey image, the image itself, as in the official code; for RGB,
an unweighted grey). Stage 2
(:mod:`medseg.objectives.reseg`) aligns the segmentation network's features with this frozen network's features,
fed the same encoded label map.

The target ``mask`` (``train.task_params: {target: mask}``) is a medseg option for the reading of the paper where
stage 1 reconstructs the mask: the target is then the one-hot mask (the foreground channel for a binary task), with
the same loss on the raw outputs. The stage-1 training task itself is :class:`medseg.tasks.ReconstructionTask`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from medseg.models.base import SegOutput
from medseg.objectives.base import Objective, ObjectiveTerm

if TYPE_CHECKING:
    from medseg.config import ExperimentConfig

__all__ = ["ReconTarget", "ReconstructionTerm", "encode_label_map", "reconstruction_objective"]

ReconTarget = Literal["image", "mask"]
"""What a reconstruction network regresses: the image (the official code) or the one-hot mask."""


def encode_label_map(mask: torch.Tensor, channels: int) -> torch.Tensor:
    """Encode a label map as the official stage-1 input: class ids as floats, repeated to ``channels``.

    Args:
        mask: ``(B, H, W)`` integer class indices.
        channels: the network's input channels.

    Returns:
        ``(B, channels, H, W)`` float32 tensor.
    """
    return mask.float().unsqueeze(1).expand(-1, channels, -1, -1).contiguous()


class ReconstructionTerm(ObjectiveTerm):
    """``0.6 · MSE + 0.4 · L1`` between the model's output and the image (or the one-hot mask).

    With ``target="image"`` a ``(B, C, H, W)`` output regresses a ``(B, 1, H, W)`` image with every output channel
    (the official broadcast); an image with several channels is reduced to its channel mean first unless it has
    exactly ``C`` channels (then channel ``c`` regresses image channel ``c``).

    Args:
        target: ``image`` (official) or ``mask`` (one-hot mask; the foreground channel when ``num_classes == 2``).
        num_classes: classes including background.
        mse_weight: weight of the mean squared error.
        l1_weight: weight of the mean absolute error.
    """

    def __init__(
        self, target: ReconTarget = "image", num_classes: int = 2, mse_weight: float = 0.6, l1_weight: float = 0.4
    ) -> None:
        super().__init__()
        self.target = target
        self.num_classes = num_classes
        self.mse_weight = mse_weight
        self.l1_weight = l1_weight

    def target_for(self, batch: Mapping[str, torch.Tensor], channels: int) -> torch.Tensor:
        """The regression target of a batch.

        Args:
            batch: the batch (``image`` ``(B, C, H, W)``, ``mask`` ``(B, H, W)``).
            channels: the model's output channels.

        Returns:
            The image (or its channel mean), or the one-hot mask ``(B, K, H, W)`` (``K = 1`` for a binary task).
        """
        if self.target == "image":
            image = batch["image"].float()
            return image.mean(1, keepdim=True) if image.shape[1] not in (1, channels) else image
        mask = batch["mask"]
        if self.num_classes == 2:
            return (mask > 0).float().unsqueeze(1)
        return F.one_hot(mask.long(), self.num_classes).permute(0, 3, 1, 2).float()

    def forward(self, output: SegOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Compute the reconstruction loss.

        Args:
            output: the model's output for the encoded label map.
            batch: the batch.

        Returns:
            Scalar loss.
        """
        prediction = output.logits.float()
        prediction, target = torch.broadcast_tensors(prediction, self.target_for(batch, prediction.shape[1]))
        return self.mse_weight * F.mse_loss(prediction, target) + self.l1_weight * F.l1_loss(prediction, target)


def reconstruction_objective(config: ExperimentConfig, target: ReconTarget = "image") -> Objective:
    """The stage-1 objective of a ``train.task: reconstruction`` run: one term ``recon``.

    Model auxiliary losses (e.g. a TA-MoSC balance loss) are still added by :class:`Objective`.

    Args:
        config: the experiment.
        target: what the network regresses (see :class:`ReconstructionTerm`).

    Returns:
        The objective.
    """
    term = ReconstructionTerm(target, config.data.num_classes)
    return Objective({"recon": (1.0, term)})
