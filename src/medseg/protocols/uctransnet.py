"""The UCTransNet protocol for GlaS and MoNuSeg (also used by UTANet and SelfReg-UNet's comparisons)."""

from __future__ import annotations

import numpy as np
import torch

from medseg.config import DataConfig
from medseg.data import LoadedCase
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.metrics.scoring import ScoreTask, compact_labels, score_binary_clean, score_uctransnet
from medseg.protocols.base import Protocol, ProtocolContext, prepared
from medseg.protocols.eightbit import case_mask_u8, resize_linear_u8
from medseg.protocols.registry import register_protocol

__all__ = ["UCTransNet2DCleanProtocol", "UCTransNet2DProtocol", "prepare_at_size_u8"]


def prepare_at_size_u8(data: DataConfig, case: LoadedCase, size: int) -> np.ndarray:
    """The model input from the image resized the 8-bit way of OpenCV-based loaders.

    A uint8 image (2D datasets) is resized to ``size`` x ``size`` in uint8 by
    :func:`~medseg.protocols.eightbit.resize_linear_u8` and then prepared as in training (``unit`` normalisation
    divides by 255); a float image (slices of volumes) is prepared at its own size, and
    :meth:`~medseg.protocols.Protocol.inputs` resizes it bilinearly in floating point.

    Args:
        data: the data settings the model was trained with.
        case: the loaded image.
        size: the side of the square input.

    Returns:
        ``(1, in_channels, h, w)`` float32.
    """
    if case.image.dtype == np.uint8:
        return prepared(resize_linear_u8(case.image, (size, size)), data)
    return prepared(case.image, data)


@register_protocol("uctransnet_2d")
class UCTransNet2DProtocol(Protocol):
    """Per-image binary metrics at the model's input size (224 in the papers), averaged over the test images.

    As UCTransNet's loader: the stored 8-bit image and mask are resized to the input size with OpenCV's uint8
    bilinear interpolation (fixed point, results rounded to integers; reproduced bit for bit by
    :mod:`medseg.protocols.eightbit`), then the image is divided by 255 (the training normalisation) and the
    mask binarised with ``> 0``; the prediction is the foreground probability ``> 0.5``. The stored mask is the
    mask file as it is, in grey (:func:`~medseg.protocols.eightbit.case_mask_u8`: 0/1 and instance-label masks keep
    a pixel only at about half coverage, as in the official loader). Dice is
    ``2·Σpg / (Σp + Σg + 1e-5)`` and IoU scikit-learn's ``jaccard_score``, so an image with both masks empty
    scores 0 on both. Metrics are computed at the input size, not at the original resolution.
    """

    description = (
        "UCTransNet test script: 8-bit image and 0/255 mask resized to the input size as OpenCV does on uint8, "
        "mask > 0, prediction > 0.5, Dice 2Σpg/(Σp+Σg+1e-5) and sklearn IoU per image at that size, mean over "
        "images"
    )
    metrics = ("dice", "iou")

    def __init__(self, context: ProtocolContext) -> None:
        if context.num_classes != 2:
            raise MedsegError(f"protocol {self.name} is for binary tasks, got {context.num_classes} classes")
        super().__init__(context)

    def prepare(self, data: DataConfig, case: LoadedCase) -> np.ndarray:
        return prepare_at_size_u8(data, case, self.context.image_size)

    def labels(self, predictor: Predictor, case: LoadedCase, probs: torch.Tensor) -> np.ndarray:
        return (probs[0, 0] > self.context.threshold).long().cpu().numpy()

    def truth(self, case: LoadedCase) -> np.ndarray:
        """The ground truth at the input size, from the stored 8-bit mask resized as the official loader does.

        Args:
            case: the loaded case.

        Returns:
            ``(S, S)`` boolean mask.
        """
        size = self.context.image_size
        return resize_linear_u8(case_mask_u8(case), (size, size)) > 0

    def score_task(self, case: LoadedCase, prediction: np.ndarray) -> ScoreTask:
        return ScoreTask(score_uctransnet, {"prediction": compact_labels(prediction), "truth": self.truth(case)})


@register_protocol("uctransnet_2d_clean")
class UCTransNet2DCleanProtocol(UCTransNet2DProtocol):
    """As ``uctransnet_2d``, but plain Dice/IoU with both-empty images reported as undefined."""

    description = (
        "as uctransnet_2d (same 8-bit resizing, at the input size) with exact Dice/IoU; images with both masks empty "
        "are undefined and left out of the means"
    )

    def score_task(self, case: LoadedCase, prediction: np.ndarray) -> ScoreTask:
        arguments = {"prediction": compact_labels(prediction), "truth": self.truth(case), "metrics": self.metrics}
        return ScoreTask(score_binary_clean, arguments)
