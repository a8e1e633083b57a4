"""The VM-UNet / ASC-Seg protocol: one confusion matrix over every pixel of the evaluated set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medseg.config import DataConfig
from medseg.data import LoadedCase
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.metrics import global_confusion_metrics
from medseg.metrics.scoring import ScoreTask, compact_labels, score_vmunet
from medseg.protocols.base import CaseResult, Protocol, ProtocolContext, format_metric, prepared, resize_bilinear
from medseg.protocols.registry import register_protocol

__all__ = ["VMUNetGlobalProtocol"]

GLOBAL_METRICS = ("dsc", "miou", "accuracy", "specificity", "sensitivity", "precision")
HEADLINE = {"dsc": "DSC", "miou": "mIoU", "accuracy": "Acc", "specificity": "Spe", "sensitivity": "Sen"}


@register_protocol("vmunet_global")
class VMUNetGlobalProtocol(Protocol):
    """Dataset-level (micro) scores at the model's input size (256 in the papers).

    Image and mask are resized bilinearly to the input size; the soft resized mask is binarised with ``>= 0.5``
    and the prediction with probability ``>= 0.5``. All pixels of the set form one confusion matrix, giving DSC,
    "mIoU" (foreground IoU, as those papers name it), accuracy, specificity and sensitivity. Per-image Dice is
    recorded for each case only to rank cases in the report.
    """

    description = (
        "VM-UNet/ASC-Seg: mask resized bilinearly to the input size and thresholded at 0.5, prediction >= 0.5, "
        "one confusion matrix over all pixels of the set (DSC, foreground IoU as mIoU, Acc, Spe, Sen)"
    )
    metrics = ("dice",)

    def __init__(self, context: ProtocolContext) -> None:
        if context.num_classes != 2:
            raise MedsegError(f"protocol {self.name} is for binary tasks, got {context.num_classes} classes")
        super().__init__(context)

    def prepare(self, data: DataConfig, case: LoadedCase) -> np.ndarray:
        return prepared(case.image, data)

    def labels(self, predictor: Predictor, case: LoadedCase, probs: torch.Tensor) -> np.ndarray:
        return (probs[0, 0] >= self.context.threshold).long().cpu().numpy()

    def truth(self, case: LoadedCase) -> np.ndarray:
        """The ground truth at the input size: the mask resized bilinearly (on the CPU), then ``>= 0.5``.

        Args:
            case: the loaded case.

        Returns:
            ``(S, S)`` boolean mask.
        """
        size = (self.context.image_size, self.context.image_size)
        mask = torch.from_numpy((case.mask > 0).astype(np.float32))[None, None]
        return (resize_bilinear(mask, size)[0, 0] >= 0.5).numpy()

    def score_task(self, case: LoadedCase, prediction: np.ndarray) -> ScoreTask:
        return ScoreTask(score_vmunet, {"prediction": compact_labels(prediction), "truth": self.truth(case)})

    def summarize(self, results: list[CaseResult]) -> dict[str, Any]:
        totals = {key: sum(int(r.info[key]) for r in results) for key in ("tp", "fp", "fn", "tn")}
        scores = global_confusion_metrics(**totals)
        return {
            "aggregation": "one confusion matrix over all pixels of the set",
            "metrics": {name: {"value": scores[name]} for name in GLOBAL_METRICS},
            "confusion": totals,
        }

    def headline(self, summary: dict[str, Any]) -> str:
        """The scores the VM-UNet/ASC-Seg tables report, from the set's confusion matrix.

        Args:
            summary: the content of ``summary.json``.

        Returns:
            E.g. ``"DSC 0.8912, mIoU 0.8037, Acc 0.9581, Spe 0.9702, Sen 0.9103 (one confusion matrix over all
            pixels)"``; an undefined score shows ``n/a``.
        """
        metrics = summary.get("metrics", {})
        scores = ", ".join(
            f"{label} {format_metric(metrics.get(key, {}).get('value'))}" for key, label in HEADLINE.items()
        )
        return f"{scores} (one confusion matrix over all pixels)"
