"""The UCTransNet protocol for GlaS and MoNuSeg (also used by UTANet and SelfReg-UNet's comparisons)."""

from __future__ import annotations

import numpy as np
import torch

from medseg.data import LoadedCase
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.metrics import EmptyPolicy, binary_case_metrics, uctransnet_case_metrics
from medseg.protocols.base import CaseResult, Protocol, ProtocolContext, resize_bilinear

__all__ = ["UCTransNet2DCleanProtocol", "UCTransNet2DProtocol"]


class UCTransNet2DProtocol(Protocol):
    """Per-image binary metrics at the model's input size (224 in the papers), averaged over the test images.

    Image and mask are resized bilinearly to the input size (OpenCV ``INTER_LINEAR`` semantics); the resized
    mask is binarised with ``> 0``; the prediction is the foreground probability ``> 0.5``. Dice is
    ``2·Σpg / (Σp + Σg + 1e-5)`` and IoU scikit-learn's ``jaccard_score``, so an image with both masks empty
    scores 0 on both. Metrics are computed at the input size, not at the original resolution.
    """

    name = "uctransnet_2d"
    description = (
        "UCTransNet test script: image and mask resized to the input size, mask > 0, prediction > 0.5, "
        "Dice 2Σpg/(Σp+Σg+1e-5) and sklearn IoU per image at that size, mean over images"
    )
    metrics = ("dice", "iou")

    def __init__(self, context: ProtocolContext) -> None:
        if context.num_classes != 2:
            raise MedsegError(f"protocol {self.name} is for binary tasks, got {context.num_classes} classes")
        super().__init__(context)

    def _predict_at_size(self, predictor: Predictor, case: LoadedCase) -> tuple[np.ndarray, np.ndarray]:
        size = (self.context.image_size, self.context.image_size)
        probs = predictor.probabilities(resize_bilinear(predictor.prepare(case.image), size))
        prediction = (probs[0, 0] > self.context.threshold).cpu().numpy()
        mask = torch.from_numpy((case.mask > 0).astype(np.float32))[None, None]
        truth = (resize_bilinear(mask, size)[0, 0] > 0).numpy()
        return prediction, truth

    def evaluate_case(self, predictor: Predictor, case: LoadedCase) -> CaseResult:
        prediction, truth = self._predict_at_size(predictor, case)
        metrics = uctransnet_case_metrics(prediction, truth)
        return CaseResult(case.case_id, metrics, prediction=prediction.astype(np.int64))


class UCTransNet2DCleanProtocol(UCTransNet2DProtocol):
    """As ``uctransnet_2d``, but plain Dice/IoU with both-empty images reported as undefined."""

    name = "uctransnet_2d_clean"
    description = (
        "as uctransnet_2d (same resizing, at the input size) with exact Dice/IoU; images with both masks empty "
        "are undefined and left out of the means"
    )

    def evaluate_case(self, predictor: Predictor, case: LoadedCase) -> CaseResult:
        prediction, truth = self._predict_at_size(predictor, case)
        values = binary_case_metrics(prediction, truth, policy=EmptyPolicy(both_empty="nan", hd95_empty="nan"))
        metrics = {name: float(values[name]) for name in self.metrics}
        return CaseResult(
            case.case_id, metrics, info={"empty_case": values["empty_case"]}, prediction=prediction.astype(np.int64)
        )
