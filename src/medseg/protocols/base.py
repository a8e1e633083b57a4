"""Evaluation protocols: named objects that own inference resizing, metric definitions and aggregation.

Papers disagree on resizing, thresholds, empty masks and aggregation, so their numbers are only comparable under
the same rules. Every summary a protocol writes names the protocol, the split, the checkpoint rule and the number
of cases, so numbers computed under different rules are never mixed up.

A protocol evaluates a case in four steps, so that :func:`medseg.evaluation.evaluate_run` can prepare and score
cases in worker processes while the model runs on batches gathered from several cases:

1. :meth:`Protocol.prepare`: the case's model inputs as numpy arrays (one per image, one per slice of a volume),
   normalised as in training and resized where the protocol resizes outside torch (numpy only);
2. :meth:`Protocol.inputs`: those arrays on the model's device, at the input size;
3. :meth:`Protocol.labels`: the label map to score, from the model's probabilities of those inputs;
4. :meth:`Protocol.score_task`: the scoring, a picklable :class:`~medseg.metrics.scoring.ScoreTask` (numpy only).

:meth:`Protocol.evaluate_case` and :meth:`Protocol.evaluate_volume` run the four steps for one case here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medseg.config import DataConfig
from medseg.data import LoadedCase, prepare_image
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.metrics import EmptyPolicy, summarize
from medseg.metrics.scoring import CaseScores, ScoreTask

__all__ = [
    "SLICE_BATCH",
    "CaseResult",
    "Protocol",
    "ProtocolContext",
    "format_metric",
    "prepared",
    "resize_bilinear",
]

SLICE_BATCH = 16
"""Inputs per model call when one case is evaluated on its own (:meth:`Protocol.evaluate_case`)."""


@dataclass(frozen=True)
class ProtocolContext:
    """What a protocol needs to know about the task.

    Attributes:
        num_classes: classes including background (2 = binary).
        image_size: the model's input size (training size); protocols that resize use it.
        class_names: names of the foreground classes 1..K-1.
        threshold: probability threshold of a binary task.
        policy: empty-mask policy of the configurable protocols.
    """

    num_classes: int
    image_size: int
    class_names: tuple[str, ...]
    threshold: float = 0.5
    policy: EmptyPolicy = field(default_factory=EmptyPolicy)


@dataclass
class CaseResult:
    """Metrics of one evaluated case (image or volume), plus its prediction for overlays.

    Attributes:
        case_id: the case.
        metrics: metric name -> value (NaN where undefined).
        per_class: class name -> metric name -> value (multi-class tasks only).
        info: extra fields written with the case (size, empty-mask case, pixel counts).
        prediction: the predicted label map (kept only until the overlay is drawn).
    """

    case_id: str
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    prediction: np.ndarray | None = None

    @classmethod
    def from_scores(cls, case_id: str, scores: CaseScores, prediction: np.ndarray | None = None) -> CaseResult:
        """The result of a scored case.

        Args:
            case_id: the case.
            scores: what :meth:`Protocol.score_task` computed.
            prediction: the label map that was scored, kept for the overlay.

        Returns:
            The result.
        """
        return cls(case_id, scores.metrics, per_class=scores.per_class, info=scores.info, prediction=prediction)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready mapping (NaN becomes ``None``)."""
        record: dict[str, Any] = {"case_id": self.case_id, **self.info, **_clean(self.metrics)}
        if self.per_class:
            record["per_class"] = {name: _clean(values) for name, values in self.per_class.items()}
        return record


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in values.items()}


def format_metric(value: Any) -> str:
    """Format a summary value for one line of text: four decimals, ``n/a`` when undefined (``None`` or NaN).

    Args:
        value: the value from a summary.

    Returns:
        The text.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def resize_bilinear(array: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of an ``(N, C, H, W)`` tensor with half-pixel centres and no anti-aliasing.

    This is what OpenCV's ``INTER_LINEAR`` and torchvision's tensor resize without antialias compute.

    Args:
        array: the tensor.
        size: ``(height, width)``.

    Returns:
        The resized tensor.
    """
    if tuple(array.shape[-2:]) == tuple(size):
        return array
    return F.interpolate(array, size=size, mode="bilinear", align_corners=False)


def prepared(image: np.ndarray, data: DataConfig) -> np.ndarray:
    """An image normalised exactly as in training (:func:`medseg.data.prepare_image`), at its own size.

    Args:
        image: raw ``(H, W)`` or ``(H, W, C)`` image.
        data: the data settings the model was trained with.

    Returns:
        ``(1, in_channels, H, W)`` float32.
    """
    return prepare_image(image if image.ndim == 3 else image[..., None], data)[None]


class Protocol:
    """Base class: predict one case and compute its metrics; aggregate the cases.

    Attributes:
        name: registry name.
        description: one sentence saying what the protocol computes.
        volumetric: whether cases are 3D volumes (evaluated per volume) rather than 2D images.
        metrics: the per-case metrics the summary aggregates.
        ranking_metric: the per-case metric (higher is better) that ranks the cases for the report's table of
            worst cases and its overlays.
        configurable_policy: whether empty masks follow ``eval.both_empty``/``eval.hd95_empty`` (otherwise the
            protocol's own fixed rules, stated in its description).

    Args:
        context: the task description.
    """

    name: str = ""
    description: str = ""
    volumetric: bool = False
    metrics: tuple[str, ...] = ("dice", "iou", "precision", "recall", "hd95")
    ranking_metric: str = "dice"
    configurable_policy: bool = False

    def __init__(self, context: ProtocolContext) -> None:
        self.context = context

    def check_cases(self, volumes: bool) -> None:
        """Refuse cases of the other kind than this protocol evaluates.

        Args:
            volumes: whether the cases are volumes (else 2D images).

        Raises:
            MedsegError: 2D images for a per-volume protocol, or volumes for a 2D one.
        """
        if self.volumetric and not volumes:
            raise MedsegError(f"protocol {self.name} evaluates volumes, but this split holds 2D images")
        if volumes and not self.volumetric:
            raise MedsegError(
                f"protocol {self.name} evaluates 2D images, but this split holds volumes; "
                "use a per-volume protocol such as transunet_acdc or transunet_synapse"
            )

    def prepare(self, data: DataConfig, case: Any) -> np.ndarray:
        """The model inputs of one case before the model's device: numpy only, so a worker process can run it.

        Args:
            data: the data settings the model was trained with (its normalisation).
            case: a :class:`~medseg.data.LoadedCase` (2D protocols) or :class:`~medseg.data.LoadedVolume`.

        Returns:
            ``(N, in_channels, h, w)`` float32: one row for an image, one per slice of a volume.
        """
        raise NotImplementedError

    def inputs(self, predictor: Predictor, arrays: np.ndarray) -> torch.Tensor:
        """Prepared arrays on the model's device, resized (bilinear) to the input size where they are not at it.

        Args:
            predictor: the model.
            arrays: what :meth:`prepare` returned.

        Returns:
            ``(N, in_channels, S, S)``.
        """
        size = (self.context.image_size, self.context.image_size)
        return resize_bilinear(torch.from_numpy(arrays).to(predictor.device), size)

    def labels(self, predictor: Predictor, case: Any, probs: torch.Tensor) -> np.ndarray:
        """The label map this protocol scores, from the probabilities of the case's :meth:`inputs`.

        Args:
            predictor: the model with its preprocessing.
            case: the case.
            probs: ``(N, K, S, S)`` probabilities of its inputs, in their order.

        Returns:
            int64 class indices at the size the protocol scores at.
        """
        raise NotImplementedError

    def score_task(self, case: Any, prediction: np.ndarray) -> ScoreTask:
        """The scoring of one case, to run here or in a worker process.

        Args:
            case: the case (its ground truth).
            prediction: what :meth:`labels` returned for it.

        Returns:
            The task; its scores become the case's :class:`CaseResult`.
        """
        raise NotImplementedError

    def _evaluate(self, predictor: Predictor, case: Any) -> CaseResult:
        """Predict (:data:`SLICE_BATCH` inputs per model call) and score one case in this process."""
        inputs = self.inputs(predictor, self.prepare(predictor.config.data, case))
        probs = torch.cat(
            [predictor.probabilities(inputs[i : i + SLICE_BATCH]) for i in range(0, len(inputs), SLICE_BATCH)]
        )
        prediction = self.labels(predictor, case, probs)
        return CaseResult.from_scores(case.case_id, self.score_task(case, prediction).run(), prediction)

    def evaluate_case(self, predictor: Predictor, case: LoadedCase) -> CaseResult:
        """Predict one 2D case and compute its metrics.

        Args:
            predictor: the model with its preprocessing.
            case: the loaded image and ground truth.

        Returns:
            The case's metrics and prediction.

        Raises:
            MedsegError: the protocol evaluates volumes.
        """
        self.check_cases(volumes=False)
        return self._evaluate(predictor, case)

    def evaluate_volume(self, predictor: Predictor, volume: Any) -> CaseResult:
        """Predict one volume slice by slice and compute its metrics.

        Args:
            predictor: the model with its preprocessing.
            volume: the loaded volume (:class:`medseg.data.LoadedVolume`).

        Returns:
            The volume's metrics and 3D prediction.

        Raises:
            MedsegError: the protocol evaluates 2D images.
        """
        self.check_cases(volumes=True)
        return self._evaluate(predictor, volume)

    def summarize(self, results: list[CaseResult]) -> dict[str, Any]:
        """Aggregate case results: mean, std, median, valid and undefined counts per metric (and per class).

        Args:
            results: every evaluated case.

        Returns:
            ``{"aggregation": "mean over cases", "metrics": {...}, "per_class": {...}}``.
        """
        summary: dict[str, Any] = {
            "aggregation": "mean over cases",
            "metrics": summarize([r.metrics for r in results], self.metrics),
        }
        class_names = list(results[0].per_class) if results and results[0].per_class else []
        if class_names:
            summary["per_class"] = {
                name: summarize([r.per_class[name] for r in results], self.metrics) for name in class_names
            }
        return summary

    def headline(self, summary: dict[str, Any]) -> str:
        """The one-line result printed after an evaluation: each metric's mean over cases, and the distance unit.

        Args:
            summary: the content of ``summary.json`` (as written by :meth:`summarize` and the evaluation).

        Returns:
            E.g. ``"dice 0.8123, hd95 4.2000 (distances in voxels)"``; a metric without a defined mean shows
            ``n/a``; the unit is named when the summary has a ``distance_unit``.
        """
        metrics = summary.get("metrics", {})
        line = ", ".join(f"{name} {format_metric(stats.get('mean'))}" for name, stats in metrics.items())
        unit = summary.get("distance_unit")
        return f"{line} (distances in {unit})" if unit else line
