"""Per-image protocols at each image's original resolution."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medseg.config import DataConfig
from medseg.data import LoadedCase
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.metrics import EmptyPolicy, mean_over_classes
from medseg.metrics.scoring import ScoreTask, compact_labels, score_perimage
from medseg.protocols.base import CaseResult, Protocol, ProtocolContext, prepared
from medseg.protocols.registry import register_protocol

__all__ = ["PerImageBinaryCleanProtocol", "PerImageBinaryProtocol", "PerImageProtocol"]

BINARY_AGGREGATION = "mean over images of each image's value; undefined values are counted in n_undefined, not averaged"
MULTICLASS_AGGREGATION = (
    "per image: mean over the foreground classes where the value is defined; metrics: mean over the images where "
    "that mean is defined (the others counted in n_undefined); per_class: each class's mean over the images where "
    "it is defined; mean_over_classes: the mean of those per-class means, the other order, which differs from "
    "metrics when values are undefined"
)


@register_protocol("perimage")
class PerImageProtocol(Protocol):
    """Per-image metrics at the original resolution, averaged over images, with the configured empty policy.

    Binary tasks threshold the foreground probability; multi-class tasks take the argmax and average the
    per-class metrics over the foreground classes. Probabilities are predicted at the training size and
    resized back (bilinear) before thresholding. HD95 is in pixels. Empty masks follow ``eval.both_empty``
    and ``eval.hd95_empty``.
    """

    description = (
        "per-image Dice/IoU/precision/recall/HD95 (pixels) at the original resolution, mean over images, "
        "empty masks per eval.both_empty / eval.hd95_empty"
    )
    configurable_policy = True

    def policy(self) -> EmptyPolicy:
        """The empty-mask policy this protocol applies."""
        return self.context.policy

    def prepare(self, data: DataConfig, case: LoadedCase) -> np.ndarray:
        return prepared(case.image, data)

    def labels(self, predictor: Predictor, case: LoadedCase, probs: torch.Tensor) -> np.ndarray:
        restored = predictor.restore(probs, case.image.shape[:2])
        return predictor.label_map(restored)[0].cpu().numpy()

    def score_task(self, case: LoadedCase, prediction: np.ndarray) -> ScoreTask:
        arguments = {
            "prediction": compact_labels(prediction),
            "mask": compact_labels(case.mask),
            "num_classes": self.context.num_classes,
            "class_names": self.context.class_names,
            "policy": self.policy(),
            "metrics": self.metrics,
        }
        return ScoreTask(score_perimage, arguments)

    def summarize(self, results: list[CaseResult]) -> dict[str, Any]:
        """Aggregate over images, stating the aggregation and the distance unit (multi-class: both orders).

        Args:
            results: every evaluated image.

        Returns:
            The base summary with ``aggregation``, ``distance_unit`` (``pixels``) and, for multi-class tasks,
            ``mean_over_classes``.
        """
        summary = super().summarize(results)
        summary["distance_unit"] = "pixels"
        if "per_class" in summary:
            summary["aggregation"] = MULTICLASS_AGGREGATION
            summary["mean_over_classes"] = mean_over_classes(summary["per_class"], self.metrics)
        else:
            summary["aggregation"] = BINARY_AGGREGATION
        return summary


@register_protocol("perimage_binary")
class PerImageBinaryProtocol(PerImageProtocol):
    """Kvasir-style binary evaluation: per-image Dice, IoU, precision, recall and HD95 at the original size.

    Threshold 0.5 on the foreground probability. Fixed empty-mask rules: an image where prediction and ground
    truth are both empty scores 1 (HD95 0); HD95 with exactly one side empty is undefined and counted as such.
    """

    description = (
        "binary per-image Dice/IoU/precision/recall/HD95 (pixels) at the original resolution, threshold 0.5, "
        "mean over images; both empty = 1, one-sided HD95 undefined"
    )
    configurable_policy = False

    def __init__(self, context: ProtocolContext) -> None:
        if context.num_classes != 2:
            raise MedsegError(f"protocol {self.name} is for binary tasks, got {context.num_classes} classes")
        super().__init__(context)

    def policy(self) -> EmptyPolicy:
        return EmptyPolicy(both_empty="one", hd95_empty="nan")


@register_protocol("perimage_binary_clean")
class PerImageBinaryCleanProtocol(PerImageBinaryProtocol):
    """As ``perimage_binary``, but an image with both masks empty is undefined (counted, not scored 1)."""

    description = (
        "binary per-image metrics at the original resolution; every undefined value (both masks empty, one-sided "
        "HD95) is reported as undefined and left out of the means"
    )

    def policy(self) -> EmptyPolicy:
        return EmptyPolicy(both_empty="nan", hd95_empty="nan")
