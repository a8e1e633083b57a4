"""The ResUNet++ protocol for Kvasir-SEG: per-image metrics at 256 x 256 with ``1e-15`` smoothing."""

from __future__ import annotations

import numpy as np

from medseg.data import LoadedCase
from medseg.metrics.scoring import ScoreTask, compact_labels, score_resunetpp
from medseg.protocols.eightbit import resize_linear_u8, stored_mask_u8
from medseg.protocols.registry import register_protocol
from medseg.protocols.uctransnet import UCTransNet2DProtocol

__all__ = ["ResUNetPPKvasirProtocol"]


@register_protocol("resunetpp_kvasir")
class ResUNetPPKvasirProtocol(UCTransNet2DProtocol):
    """Per-image Dice, IoU, precision and recall at the model's input size (256 in the paper), mean over images.

    As ResUNet++'s official test script: the stored 8-bit image and mask are resized to the input size with
    OpenCV's uint8 bilinear interpolation (:mod:`medseg.protocols.eightbit`), the image divided by 255 (the
    training normalisation), the mask kept in 0..255 and thresholded at ``> 0.5`` (any non-zero value after
    rounding), the prediction at probability ``> 0.5``. Every ratio is smoothed with ``1e-15``
    (:func:`~medseg.metrics.resunetpp_case_metrics`), so nothing is undefined: both masks empty scores 1, an empty
    prediction has precision 1, an empty ground truth recall 1. The sums are divided by the number of images.
    Input preparation and labels are those of ``uctransnet_2d``; the ground truth is the 0/255 image of the class
    mask (Kvasir's lossy JPEG masks are binarised by the reader first).
    """

    description = (
        "ResUNet++ test script: 8-bit image and 0/255 mask resized to the input size as OpenCV does on uint8, "
        "mask > 0, prediction > 0.5, Dice/IoU/precision/recall with +1e-15 smoothing per image at that size "
        "(both empty = 1, one-side-empty precision or recall = 1), mean over images"
    )
    metrics = ("dice", "iou", "precision", "recall")

    def truth(self, case: LoadedCase) -> np.ndarray:
        """The ground truth at the input size, from the stored 8-bit mask resized as the official script does.

        Args:
            case: the loaded case.

        Returns:
            ``(S, S)`` boolean mask.
        """
        size = self.context.image_size
        return resize_linear_u8(stored_mask_u8(case.mask), (size, size)) > 0

    def score_task(self, case: LoadedCase, prediction: np.ndarray) -> ScoreTask:
        return ScoreTask(score_resunetpp, {"prediction": compact_labels(prediction), "truth": self.truth(case)})
