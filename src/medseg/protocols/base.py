"""Evaluation protocols: named objects that own inference, metric definitions and aggregation.

Every summary a protocol writes names the protocol, the split, the checkpoint rule and the number of cases, so
numbers computed under different rules are never mixed up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medseg.data import LoadedCase
from medseg.inference import Predictor
from medseg.metrics import EmptyPolicy, binary_case_metrics, multiclass_case_metrics, summarize

__all__ = ["CaseResult", "PerImageProtocol", "Protocol", "get_protocol", "list_protocols"]

METRICS = ("dice", "iou", "precision", "recall", "hd95")


@dataclass
class CaseResult:
    """Metrics of one evaluated case, plus its prediction for overlays.

    Attributes:
        case_id: the case.
        metrics: metric name -> value (NaN where undefined under the empty-mask policy).
        per_class: class name -> metric name -> value (multi-class tasks only).
        info: extra fields written with the case (size, empty-mask case).
        prediction: the predicted label map (kept only for overlays).
    """

    case_id: str
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    prediction: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready mapping (NaN becomes ``None``)."""
        record: dict[str, Any] = {"case_id": self.case_id, **self.info, **_clean(self.metrics)}
        if self.per_class:
            record["per_class"] = {name: _clean(values) for name, values in self.per_class.items()}
        return record


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in values.items()}


class Protocol:
    """Base class: evaluate a predictor on cases and aggregate.

    Attributes:
        name: registry name.
        description: one sentence saying what the protocol computes.
    """

    name: str = ""
    description: str = ""

    def evaluate_case(self, predictor: Predictor, case: LoadedCase) -> CaseResult:
        """Predict one case and compute its metrics.

        Args:
            predictor: the model with its preprocessing.
            case: the loaded case (image and ground truth).

        Returns:
            The case's metrics and prediction.
        """
        raise NotImplementedError

    def summarize(self, results: list[CaseResult]) -> dict[str, Any]:
        """Aggregate case results: mean, std, median, valid and undefined counts per metric."""
        summary: dict[str, Any] = {"metrics": summarize([r.metrics for r in results], METRICS)}
        class_names = list(results[0].per_class) if results and results[0].per_class else []
        if class_names:
            summary["per_class"] = {
                name: summarize([r.per_class[name] for r in results], METRICS) for name in class_names
            }
        return summary


class PerImageProtocol(Protocol):
    """Per-image metrics at each image's original resolution, averaged over images.

    Binary tasks threshold the foreground probability at ``eval.threshold``; multi-class tasks take the argmax and
    average the per-class metrics over the foreground classes. HD95 is in pixels. Empty masks follow
    ``eval.both_empty`` and ``eval.hd95_empty`` (see :class:`medseg.metrics.EmptyPolicy`).

    Args:
        policy: the empty-mask policy.
        num_classes: classes including background.
    """

    name = "perimage"
    description = (
        "per-image Dice/IoU/precision/recall/HD95 (pixels) at the original resolution, mean over images"
    )

    def __init__(self, policy: EmptyPolicy, num_classes: int) -> None:
        self.policy = policy
        self.num_classes = num_classes

    def evaluate_case(self, predictor: Predictor, case: LoadedCase) -> CaseResult:
        prediction = predictor.predict(case.image)
        info: dict[str, Any] = {"height": int(case.mask.shape[0]), "width": int(case.mask.shape[1])}
        if self.num_classes == 2:
            values = binary_case_metrics(prediction > 0, case.mask > 0, policy=self.policy)
            info["empty_case"] = values.pop("empty_case")
            metrics = {k: float(v) for k, v in values.items() if k in METRICS}
            return CaseResult(case.case_id, metrics, info=info, prediction=prediction)
        values = multiclass_case_metrics(prediction, case.mask, self.num_classes, policy=self.policy)
        per_class = {
            name: {k: float(v) for k, v in class_values.items() if k in METRICS}
            for name, class_values in values["per_class"].items()
        }
        metrics = {k: float(v) for k, v in values["mean"].items() if k in METRICS}
        return CaseResult(case.case_id, metrics, per_class=per_class, info=info, prediction=prediction)


_PROTOCOLS: dict[str, type[Protocol]] = {PerImageProtocol.name: PerImageProtocol}


def list_protocols() -> list[str]:
    """Return the names of the available protocols."""
    return sorted(_PROTOCOLS)


def get_protocol(name: str, policy: EmptyPolicy, num_classes: int) -> Protocol:
    """Build a protocol by name.

    Args:
        name: protocol name, see :func:`list_protocols`.
        policy: empty-mask policy.
        num_classes: classes including background.

    Returns:
        The protocol.

    Raises:
        ValueError: unknown name, with the valid ones.
    """
    if name not in _PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; available: {', '.join(list_protocols())}")
    return _PROTOCOLS[name](policy, num_classes)
